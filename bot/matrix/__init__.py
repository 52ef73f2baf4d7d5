"""The Matrix adapter: the connection (the only place that talks to the homeserver through nio),
end-to-end encryption and cross-signing, who may do what in a room, rendering replies, and the
rooms the bot makes."""

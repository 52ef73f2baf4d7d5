"""The way from a sync to a reply: the sync loop, the per-room lanes, command handling, sending,
and the scheduler and welcomer that queue messages of their own."""

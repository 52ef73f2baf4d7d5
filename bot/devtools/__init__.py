"""For developers only: a throwaway Synapse on loopback for the tests and the demo."""

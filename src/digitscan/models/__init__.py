"""The networks and how they run: architectures, inference, metadata validation, checkpoints, backends, export."""

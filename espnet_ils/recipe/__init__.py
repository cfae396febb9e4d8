"""What a recipe run settles around its stages: every config built once and the disk plan before
the first, what the later stages need of the data once stage 2 has formatted it."""

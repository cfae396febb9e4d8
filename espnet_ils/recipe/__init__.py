"""What a recipe run settles before its first stage: every config built once, and the disk plan."""

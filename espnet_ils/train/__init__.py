"""ESPnet's tasks with our model: class registration, checked label batches, crash-safe
checkpoints, and the guard that keeps ESPnet's imports offline.
"""

"""A slide through the model into a quality map: the plan, the task for one block of tiles, and single fields."""

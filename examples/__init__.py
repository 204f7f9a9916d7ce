"""Examples of what users bring: a task, data and a model of their own."""

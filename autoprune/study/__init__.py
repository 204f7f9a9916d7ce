"""A study: setup on the driver, the trials under Ray Tune, the front at the end."""

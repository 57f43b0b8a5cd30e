"""Reading a finished study and the numbers the analysis notebooks and the report draw (no plotting here)."""

// Filled in by the parse work.

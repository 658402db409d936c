// Filled in by the mgmt work.

// Filled in by the port_spec work.

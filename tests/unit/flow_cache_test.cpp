// Filled in by the flow_cache work.

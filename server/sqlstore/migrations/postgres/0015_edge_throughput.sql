-- What relays measure (issue 22, the operator console's Edges page): the
-- payload bytes of the chunks a relay stored since it started, and its
-- throughput over its last heartbeat interval (bytes per second), as
-- its heartbeat reports them.
ALTER TABLE edge_nodes ADD COLUMN bytes_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE edge_nodes ADD COLUMN throughput_bps BIGINT NOT NULL DEFAULT 0;

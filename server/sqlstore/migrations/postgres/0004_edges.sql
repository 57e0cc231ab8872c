-- The edge catalogue and the live relays (issue 6), PostgreSQL.
--
-- edge_locations is the catalogue of points of presence, seeded below;
-- its created_at is the time this migration ran (the only time jetty takes
-- from the database clock: a migration has no Go clock to ask).
--
-- edge_nodes holds one row per running relay (`jetty edge`) as its last
-- heartbeat described it. location_id is NULL when the relay named none.
-- live_until is derived, written by every heartbeat as
-- last_seen + server.EdgeLiveness(interval_ms): the relay is offered while
-- live_until > now, a comparison both dialects make exactly and through an
-- index (SQLite cannot add a duration to the text it stores times as
-- without losing the microseconds).
CREATE TABLE edge_locations (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  city TEXT NOT NULL,
  country VARCHAR(2) NOT NULL,
  region TEXT NOT NULL,
  latitude DOUBLE PRECISION NOT NULL,
  longitude DOUBLE PRECISION NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT check_edge_locations_coordinates CHECK (latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180)
);

INSERT INTO edge_locations (id, name, city, country, region, latitude, longitude) VALUES
  ('iad', 'Ashburn', 'Ashburn', 'US', 'us-east', 39.0438, -77.4874),
  ('ord', 'Chicago', 'Chicago', 'US', 'us-central', 41.8781, -87.6298),
  ('dfw', 'Dallas', 'Dallas', 'US', 'us-central', 32.7767, -96.7970),
  ('lax', 'Los Angeles', 'Los Angeles', 'US', 'us-west', 34.0522, -118.2437),
  ('sjc', 'San Jose', 'San Jose', 'US', 'us-west', 37.3382, -121.8863),
  ('sea', 'Seattle', 'Seattle', 'US', 'us-west', 47.6062, -122.3321),
  ('yyz', 'Toronto', 'Toronto', 'CA', 'ca-central', 43.6532, -79.3832),
  ('gru', 'São Paulo', 'São Paulo', 'BR', 'sa-east', -23.5505, -46.6333),
  ('lhr', 'London', 'London', 'GB', 'eu-west', 51.5074, -0.1278),
  ('ams', 'Amsterdam', 'Amsterdam', 'NL', 'eu-west', 52.3676, 4.9041),
  ('fra', 'Frankfurt', 'Frankfurt am Main', 'DE', 'eu-central', 50.1109, 8.6821),
  ('cdg', 'Paris', 'Paris', 'FR', 'eu-west', 48.8566, 2.3522),
  ('arn', 'Stockholm', 'Stockholm', 'SE', 'eu-north', 59.3293, 18.0686),
  ('waw', 'Warsaw', 'Warsaw', 'PL', 'eu-central', 52.2297, 21.0122),
  ('jnb', 'Johannesburg', 'Johannesburg', 'ZA', 'af-south', -26.2041, 28.0473),
  ('dxb', 'Dubai', 'Dubai', 'AE', 'me-central', 25.2048, 55.2708),
  ('bom', 'Mumbai', 'Mumbai', 'IN', 'ap-south', 19.0760, 72.8777),
  ('sin', 'Singapore', 'Singapore', 'SG', 'ap-southeast', 1.3521, 103.8198),
  ('nrt', 'Tokyo', 'Tokyo', 'JP', 'ap-northeast', 35.6762, 139.6503),
  ('syd', 'Sydney', 'Sydney', 'AU', 'ap-southeast', -33.8688, 151.2093)
ON CONFLICT (id) DO NOTHING;

CREATE TABLE edge_nodes (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  location_id TEXT REFERENCES edge_locations(id) ON DELETE SET NULL,
  mode VARCHAR(16) NOT NULL,
  capacity INTEGER NOT NULL,
  inflight INTEGER NOT NULL,
  draining BOOLEAN NOT NULL DEFAULT false,
  interval_ms BIGINT NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  last_seen TIMESTAMPTZ NOT NULL,
  live_until TIMESTAMPTZ NOT NULL,
  CONSTRAINT check_edge_nodes_counts CHECK (capacity >= 0 AND inflight >= 0 AND interval_ms >= 0)
);

-- LiveEdges: the nodes whose last heartbeat is recent enough.
CREATE INDEX idx_edge_nodes_live_until ON edge_nodes(live_until);
-- PruneEdges: the nodes not seen for a long time.
CREATE INDEX idx_edge_nodes_last_seen ON edge_nodes(last_seen);

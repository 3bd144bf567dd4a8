//! The PostgreSQL schema, versioned in `schema_version` (one row per applied version).
//!
//! Readable with psql as it stands: `SELECT * FROM leases_readable` shows each binding
//! as `cidr`, the DUID in hex and the lifetimes as timestamps. The lease identity
//! (kind, address, prefix length) is the primary key, so a later claim of an address
//! by another daemon can be an insert that fails on conflict rather than a race.

use tokio_postgres::Client;

use super::{pg_error, Location, StoreError};

/// Migration `i` moves the schema from version i to i+1. Append, never edit: deployed
/// databases already ran the old ones.
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    (
        "leases: addresses as inet, prefixes as cidr, DUIDs as bytea",
        "CREATE TABLE leases (
        kind            text        NOT NULL CHECK (kind IN ('na', 'pd')),
        -- The address, or the first address of the prefix; always a /128 inet.
        address         inet        NOT NULL CHECK (family(address) = 6 AND masklen(address) = 128),
        prefix_len      smallint    NOT NULL CHECK (prefix_len BETWEEN 1 AND 128),
        -- The same binding as one value, e.g. 2001:db8:100::/56 (2001:db8::1/128 for an address).
        prefix          cidr        GENERATED ALWAYS AS (set_masklen(address::cidr, prefix_len)) STORED,
        duid            bytea       NOT NULL CHECK (octet_length(duid) BETWEEN 1 AND 130),
        iaid            bigint      NOT NULL CHECK (iaid BETWEEN 0 AND 4294967295),
        -- Link name, or relay link id for relayed clients.
        iface           text        NOT NULL,
        valid_until     bigint      NOT NULL,  -- unix seconds
        preferred_until bigint      NOT NULL,  -- unix seconds
        state           text        NOT NULL CHECK (state IN ('bound', 'declined')),
        -- Where the route to a delegated prefix points; both or neither.
        next_hop        inet        CHECK (next_hop IS NULL OR family(next_hop) = 6),
        next_hop_dev    text,
        updated_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (kind, address, prefix_len),
        CHECK (kind = 'pd' OR prefix_len = 128),
        CHECK ((next_hop IS NULL) = (next_hop_dev IS NULL))
     );
     CREATE INDEX leases_by_client ON leases (duid, iaid, kind);
     CREATE INDEX leases_by_expiry ON leases (valid_until);
     -- Same rows with human-readable values, for operators.
     CREATE VIEW leases_readable AS
        SELECT kind, prefix AS binding, encode(duid, 'hex') AS duid, iaid, iface, state,
               to_timestamp(valid_until) AS valid_until, to_timestamp(preferred_until) AS preferred_until,
               next_hop, next_hop_dev, updated_at
        FROM leases;",
    ),
    (
        "several daemons on one database: claims that fail on another box's binding, change notifications",
        "-- Which daemon wrote the row last (host:pid, or what PgOptions::writer names).
     ALTER TABLE leases ADD COLUMN written_by text NOT NULL DEFAULT '';
     -- Raised by a claim that finds the binding held by another client and written by
     -- another daemon: the transaction aborts and that daemon's writer drops the claim.
     CREATE FUNCTION dhcpv6_lease_taken(k text, a inet, n smallint) RETURNS integer
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'lease % %/% is held by another client', k, host(a), n USING ERRCODE = 'DH001';
        END $$;
     -- Every change, for the other daemons (LISTEN dhcpv6_leases). One line per row:
     -- U kind address len duid-hex iaid valid preferred state next_hop|- dev|- writer iface
     -- D kind address len valid_until writer
     CREATE FUNCTION dhcpv6_lease_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('dhcpv6_leases', concat_ws(' ', 'D', OLD.kind, host(OLD.address),
                    OLD.prefix_len, OLD.valid_until, OLD.written_by));
            ELSE
                PERFORM pg_notify('dhcpv6_leases', concat_ws(' ', 'U', NEW.kind, host(NEW.address),
                    NEW.prefix_len, encode(NEW.duid, 'hex'), NEW.iaid, NEW.valid_until, NEW.preferred_until,
                    NEW.state, coalesce(host(NEW.next_hop), '-'), coalesce(NEW.next_hop_dev, '-'),
                    NEW.written_by, NEW.iface));
            END IF;
            RETURN NULL;
        END $$;
     CREATE TRIGGER leases_notify AFTER INSERT OR UPDATE OR DELETE ON leases
        FOR EACH ROW EXECUTE FUNCTION dhcpv6_lease_notify();",
    ),
    (
        "leasequery: the client's last transaction time and its relays' identities",
        "ALTER TABLE leases ADD COLUMN last_transaction bigint NOT NULL DEFAULT 0;  -- unix seconds, 0: unknown
     -- What the relays said when the lease was last written; the three addresses are set
     -- together (relayed) or not at all (a client on the link).
     ALTER TABLE leases ADD COLUMN relay_link_address inet CHECK (relay_link_address IS NULL OR family(relay_link_address) = 6);
     ALTER TABLE leases ADD COLUMN relay_peer_address inet CHECK (relay_peer_address IS NULL OR family(relay_peer_address) = 6);
     ALTER TABLE leases ADD COLUMN relay_source inet CHECK (relay_source IS NULL OR family(relay_source) = 6);
     ALTER TABLE leases ADD COLUMN relay_interface_id bytea;
     ALTER TABLE leases ADD COLUMN relay_remote_id bytea;       -- enterprise number then id
     ALTER TABLE leases ADD COLUMN relay_subscriber_id bytea;
     ALTER TABLE leases ADD COLUMN relay_id bytea;              -- a DUID (RFC 5460)
     ALTER TABLE leases ADD COLUMN relay_client_linklayer bytea; -- hardware type then address
     ALTER TABLE leases ADD CONSTRAINT leases_relay_addresses CHECK (
        (relay_link_address IS NULL) = (relay_peer_address IS NULL)
        AND (relay_link_address IS NULL) = (relay_source IS NULL));
     -- By DUID: leases_by_client (duid, iaid, kind) of version 1 serves it.
     -- Upserts are announced as R lines: U's fields, then last_transaction and the relay
     -- columns ('-' for NULL, identifiers in hex), then the interface (the rest of the line).
     -- A line pg_notify could not take (8000 bytes) is sent as U, without them.
     CREATE OR REPLACE FUNCTION dhcpv6_lease_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            line text;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('dhcpv6_leases', concat_ws(' ', 'D', OLD.kind, host(OLD.address),
                    OLD.prefix_len, OLD.valid_until, OLD.written_by));
                RETURN NULL;
            END IF;
            line := concat_ws(' ', 'R', NEW.kind, host(NEW.address),
                NEW.prefix_len, encode(NEW.duid, 'hex'), NEW.iaid, NEW.valid_until, NEW.preferred_until,
                NEW.state, coalesce(host(NEW.next_hop), '-'), coalesce(NEW.next_hop_dev, '-'),
                NEW.written_by, NEW.last_transaction,
                coalesce(host(NEW.relay_link_address), '-'), coalesce(host(NEW.relay_peer_address), '-'),
                coalesce(host(NEW.relay_source), '-'), coalesce(encode(NEW.relay_interface_id, 'hex'), '-'),
                coalesce(encode(NEW.relay_remote_id, 'hex'), '-'), coalesce(encode(NEW.relay_subscriber_id, 'hex'), '-'),
                coalesce(encode(NEW.relay_id, 'hex'), '-'), coalesce(encode(NEW.relay_client_linklayer, 'hex'), '-'),
                NEW.iface);
            IF octet_length(line) >= 8000 THEN
                line := concat_ws(' ', 'U', NEW.kind, host(NEW.address),
                    NEW.prefix_len, encode(NEW.duid, 'hex'), NEW.iaid, NEW.valid_until, NEW.preferred_until,
                    NEW.state, coalesce(host(NEW.next_hop), '-'), coalesce(NEW.next_hop_dev, '-'),
                    NEW.written_by, NEW.iface);
            END IF;
            PERFORM pg_notify('dhcpv6_leases', line);
            RETURN NULL;
        END $$;
     CREATE INDEX leases_by_relay_id ON leases (relay_id) WHERE relay_id IS NOT NULL;
     CREATE INDEX leases_by_relay_link ON leases (relay_link_address) WHERE relay_link_address IS NOT NULL;
     CREATE INDEX leases_by_remote_id ON leases (relay_remote_id) WHERE relay_remote_id IS NOT NULL;",
    ),
    (
        "heartbeats: which boxes are alive, for the load split of a pair on one link",
        "-- One row per daemon (its written_by name), beat_at by the database's clock.
     CREATE TABLE heartbeats (
        box     text        PRIMARY KEY,
        beat_at timestamptz NOT NULL DEFAULT clock_timestamp()
     );",
    ),
];

/// The version this build writes.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Serialises schema changes among daemons opening one database at once
/// (`pg_advisory_xact_lock` key; the bytes spell "dhcpv6d").
const MIGRATION_LOCK: i64 = 0x0064_6863_7076_3664;

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, or refuses a newer one.
pub(super) async fn migrate(client: &mut Client, location: &Location) -> Result<(), StoreError> {
    let err = |action| pg_error(location, action);
    let tx = client.transaction().await.map_err(err("migrate schema"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(err("lock schema"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version     bigint      PRIMARY KEY,
            description text        NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(err("create schema_version"))?;
    let found: i64 = tx
        .query_one("SELECT coalesce(max(version), 0)::bigint FROM schema_version", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(err("read schema version"))?;
    let Some(pending) = usize::try_from(found).ok().and_then(|v| MIGRATIONS.get(v..)) else {
        return Err(StoreError::UnsupportedSchema { store: location.clone(), found, supported: SCHEMA_VERSION });
    };
    for (version, (description, sql)) in (found + 1..).zip(pending) {
        tx.batch_execute(sql).await.map_err(err("migrate schema"))?;
        tx.execute("INSERT INTO schema_version (version, description) VALUES ($1, $2)", &[&version, description])
            .await
            .map_err(err("migrate schema"))?;
    }
    tx.commit().await.map_err(err("migrate schema"))
}

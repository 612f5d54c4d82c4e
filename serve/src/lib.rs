//! `icefjord serve`: the lake's read-only front door over the PostgreSQL wire
//! protocol and HTTP (issue 13). Being built.

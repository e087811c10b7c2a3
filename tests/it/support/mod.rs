//! Support code shared by the integration tests: a throwaway PKI, the fixture
//! zone, an in-process DNS-over-TLS upstream to point dotstub at, dotstub
//! itself started in-process, and a plain DNS client.

pub mod certs;
pub mod client;
pub mod dot_upstream;
pub mod fixtures;
pub mod server;

//! Support code shared by the integration tests: a throwaway PKI, the fixture
//! zone, an in-process DNS-over-TLS upstream to point dotstub at, dotstub
//! itself started in-process, a plain DNS client, and a signed hierarchy
//! for DNSSEC.

pub mod certs;
pub mod client;
pub mod dot_upstream;
pub mod fixtures;
pub mod netns;
pub mod process;
pub mod server;
pub mod signed;

//! The subcommands: argument structs (clap) and the code that runs them.
//! Binary-only code: errors are `anyhow` here and typed in the library.
pub mod gen_pcap;
pub mod receive;
pub mod replay;
pub mod rx;
pub mod serve;

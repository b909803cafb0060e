//! The soak (`ci/soak`, binary `soak`): thousands of GitHub jobs through both intakes in ticket
//! mode on the real cluster while faults are injected, then invariants checked. One module per
//! stage: [`plan`] (sizes, faults and the seeded schedule), [`workload`] (repositories, pools,
//! runs), [`chaos`] (what is done to the daemons and the node), [`watch`] (samples taken while
//! it runs: secrets in Slurm records and job environments, dispatcher memory), [`invariants`]
//! (the end checks, their table and JSON), [`secrets`] (the secret search).

pub mod chaos;
pub mod invariants;
pub mod plan;
pub mod secrets;
pub mod watch;
pub mod workload;

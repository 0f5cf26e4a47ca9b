//! Which process of a data-parallel job this is, read from the launcher's environment — the field's
//! conventions, so that a job starts the way PyTorch jobs start:
//!
//! | launcher | rank | world size | rank on its host | rendezvous |
//! |---|---|---|---|---|
//! | torchrun (and by hand) | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` | `MASTER_ADDR`, `MASTER_PORT` |
//! | SLURM (`srun`) | `SLURM_PROCID` | `SLURM_STEP_NUM_TASKS` (or `SLURM_NTASKS`) | `SLURM_LOCALID` | `MASTER_ADDR`, `MASTER_PORT` |
//!
//! torchrun's variables win where both are set (torchrun inside a SLURM allocation). SLURM sets no
//! rendezvous address: the batch script exports it, as for PyTorch
//! (`export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)`).

use swiattn_core::{Error, Result};

/// One process's place in a job of `size` processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    /// This process's global rank, `0..size`; rank 0 hosts the rendezvous and writes the run.
    pub rank: usize,
    pub size: usize,
    /// The rank among the processes of this host: the GPU this process takes.
    pub local_rank: usize,
    /// Rank 0's host (`MASTER_ADDR`) and the port it listens on (`MASTER_PORT`).
    pub address: String,
    pub port: u16,
}

impl World {
    /// The job of this process's environment; `None` for a process on its own (no launcher, or a
    /// world of one).
    pub fn from_env() -> Result<Option<World>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`World::from_env`] over any source of variables (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<World>> {
        let (rank, size, local) = if var("WORLD_SIZE").is_some() {
            ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        } else if var("SLURM_PROCID").is_some() {
            let size = if var("SLURM_STEP_NUM_TASKS").is_some() { "SLURM_STEP_NUM_TASKS" } else { "SLURM_NTASKS" };
            ("SLURM_PROCID", size, "SLURM_LOCALID")
        } else {
            return Ok(None);
        };
        let number = |name: &str| -> Result<Option<usize>> {
            var(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        Error::Invalid(format!("{name}={v:?}: a data-parallel job needs a non-negative integer here"))
                    })
                })
                .transpose()
        };
        let required = |name: &str| -> Result<usize> {
            number(name)?
                .ok_or_else(|| Error::Invalid(format!("{name} is not set, but {size} is: the launcher sets both")))
        };
        let size_value = required(size)?;
        if size_value == 0 {
            return Err(Error::Invalid(format!("{size}=0: a job has at least one process")));
        }
        if size_value == 1 {
            return Ok(None);
        }
        let rank_value = required(rank)?;
        if rank_value >= size_value {
            return Err(Error::Invalid(format!(
                "{rank}={rank_value} with {size}={size_value}: ranks run from 0 to {}",
                size_value - 1
            )));
        }
        let address = var("MASTER_ADDR").filter(|a| !a.trim().is_empty()).ok_or_else(|| {
            Error::Invalid(format!(
                "MASTER_ADDR is not set: the {size_value} processes meet at rank 0's host \
                 (torchrun sets it; under SLURM, export it in the batch script)"
            ))
        })?;
        let port = var("MASTER_PORT")
            .ok_or_else(|| Error::Invalid("MASTER_PORT is not set: the port rank 0 listens on".into()))?;
        let port: u16 = port
            .trim()
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| Error::Invalid(format!("MASTER_PORT={port:?}: a TCP port, 1 to 65535")))?;
        Ok(Some(World {
            rank: rank_value,
            size: size_value,
            local_rank: number(local)?.unwrap_or(0),
            address: address.trim().to_string(),
            port,
        }))
    }

    /// `host:port` where rank 0 listens.
    pub fn master(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn world(vars: &[(&str, &str)]) -> Result<Option<World>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        World::from_vars(|name| map.get(name).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        world(vars).expect_err("refused").to_string()
    }

    #[test]
    fn torchrun_variables() {
        let w = world(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
        ]);
        assert_eq!(w.unwrap(), Some(World { rank: 3, size: 8, local_rank: 1, address: "node0".into(), port: 29500 }));
    }

    #[test]
    fn slurm_variables_and_torchrun_first() {
        let slurm = [
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "1234"),
        ];
        let w = world(&slurm).unwrap().unwrap();
        assert_eq!((w.rank, w.size, w.local_rank, w.master()), (5, 8, 1, "10.0.0.1:1234".to_string()));
        let both: Vec<_> = slurm.iter().copied().chain([("RANK", "0"), ("WORLD_SIZE", "2")]).collect();
        let w = world(&both).unwrap().unwrap();
        assert_eq!((w.rank, w.size, w.local_rank), (0, 2, 0));
    }

    #[test]
    fn alone_without_a_launcher_or_in_a_world_of_one() {
        assert_eq!(world(&[]).unwrap(), None);
        assert_eq!(world(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        assert_eq!(world(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]).unwrap(), None);
    }

    #[test]
    fn bad_variables_are_named() {
        let base = [("MASTER_ADDR", "h"), ("MASTER_PORT", "1")];
        let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
            base.iter().copied().chain(extra.iter().copied()).collect()
        };
        assert!(error(&with(&[("WORLD_SIZE", "2")])).contains("RANK is not set"));
        assert!(error(&with(&[("WORLD_SIZE", "two"), ("RANK", "0")])).contains("WORLD_SIZE=\"two\""));
        assert!(error(&with(&[("WORLD_SIZE", "2"), ("RANK", "2")])).contains("RANK=2 with WORLD_SIZE=2"));
        assert!(error(&with(&[("WORLD_SIZE", "0"), ("RANK", "0")])).contains("WORLD_SIZE=0"));
        assert!(error(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "1")]).contains("MASTER_ADDR is not set"));
        assert!(error(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h")]).contains("MASTER_PORT is not set"));
        let bad_port = [("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")];
        assert!(error(&bad_port).contains("MASTER_PORT=\"70000\""));
        let slurm = with(&[("SLURM_PROCID", "x"), ("SLURM_NTASKS", "2")]);
        assert!(error(&slurm).contains("SLURM_PROCID=\"x\""));
    }
}

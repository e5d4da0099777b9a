//! The `nebula-provision` command line: validate, init, plan, render, renew, apply and status, each
//! reading one inventory file. Thin: every decision is made in the library.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use nebula_provision::apply::{apply_host, ApplyOptions};
use nebula_provision::model::Mesh;
use nebula_provision::status::{self, collect};
use nebula_provision::{load_mesh, pki, provision};

/// From one inventory file to a running Nebula mesh.
#[derive(Parser, Debug)]
#[command(name = "nebula-provision", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// The inventory file (YAML; see nebula-provision/INVENTORY.md).
    #[arg(long, short = 'i', value_name = "FILE")]
    inventory: PathBuf,
    /// Read the CA passphrase from this file (first line) instead of the environment variable
    /// named by pki.passphrase_env.
    #[arg(long, value_name = "FILE")]
    ca_passphrase_file: Option<PathBuf>,
    /// Pretend the time is this unix time (testing renewals).
    #[arg(long, hide = true)]
    now: Option<i64>,
}

#[derive(Args, Debug, Clone)]
struct OutArgs {
    /// Output directory: one folder per host, plus ansible/ and terraform/.
    #[arg(long, short = 'o', value_name = "DIR")]
    out: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check the inventory and print a summary of the mesh.
    Validate {
        #[command(flatten)]
        common: Common,
    },
    /// Create the CA if the PKI directory has none (otherwise show it).
    Init {
        #[command(flatten)]
        common: Common,
    },
    /// Show what `render` would change (CA, certificates, files); writes nothing.
    Plan {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        out: OutArgs,
        /// Exit with status 2 when something would change.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Create or reuse the CA, issue or renew certificates, and write every bundle.
    Render {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        out: OutArgs,
        /// Re-issue this host's certificate even if it is still good (repeatable).
        #[arg(long, value_name = "HOST")]
        renew: Vec<String>,
    },
    /// Re-issue certificates now (the named hosts, or all) and render.
    Renew {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        out: OutArgs,
        /// Host to renew (repeatable); default all.
        #[arg(long, value_name = "HOST")]
        host: Vec<String>,
    },
    /// Render, then push each host's bundle over SSH, install it, (re)start nebula and check it.
    Apply {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        out: OutArgs,
        /// Only these hosts (repeatable); default every host with an `ssh` section.
        #[arg(long, value_name = "HOST")]
        host: Vec<String>,
        /// Show what would change locally and on the hosts; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Install under this directory on the hosts instead of / (overrides ssh.remote_root).
        #[arg(long, value_name = "DIR")]
        root: Option<String>,
        /// systemctl command on the hosts (overrides ssh.systemctl).
        #[arg(long, value_name = "CMD")]
        systemctl: Option<String>,
        /// ssh program.
        #[arg(long, default_value = "ssh")]
        ssh: String,
        /// scp program.
        #[arg(long, default_value = "scp")]
        scp: String,
        /// Seconds to wait for nebula.service to become active.
        #[arg(long, default_value_t = 20)]
        check_seconds: u32,
    },
    /// Ask every host (`nebula-ctl status --json` over the ssh access apply uses) and print the
    /// mesh: up or down, tunnels against the ones the firewall allows, RTTs, certificate days
    /// left; then the renewals due. Exit status 2 when a host is down.
    Status {
        #[command(flatten)]
        common: Common,
        /// Only these hosts (repeatable); default every host.
        #[arg(long, value_name = "HOST")]
        host: Vec<String>,
        /// Certificates (hosts and CA) expiring within this many days are due for renewal.
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        renew_within: u32,
        /// The output directory to put in the printed renew commands.
        #[arg(long, short = 'o', value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print everything collected as one JSON document instead of the table.
        #[arg(long)]
        json: bool,
        /// Seconds per host; a host that has not answered by then is down.
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        timeout: u64,
        /// Hosts asked at the same time.
        #[arg(long, value_name = "N", default_value_t = 16)]
        parallel: usize,
        /// ssh program.
        #[arg(long, default_value = "ssh")]
        ssh: String,
    },
}

fn now(common: &Common) -> i64 {
    common.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

fn passphrase(common: &Common, mesh: &Mesh) -> Result<Option<Vec<u8>>> {
    if let Some(f) = &common.ca_passphrase_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading the CA passphrase from {}", f.display()))?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            bail!("{}: the passphrase file is empty", f.display());
        }
        return Ok(Some(line.as_bytes().to_vec()));
    }
    Ok(std::env::var_os(&mesh.pki.passphrase_env)
        .filter(|v| !v.is_empty())
        .map(|v| v.into_encoded_bytes()))
}

fn load(common: &Common) -> Result<Mesh> {
    Ok(load_mesh(&common.inventory)?)
}

fn render(
    common: &Common,
    out: &Path,
    force: BTreeSet<String>,
    dry_run: bool,
) -> Result<(Mesh, provision::Outcome)> {
    let mesh = load(common)?;
    for h in &force {
        if mesh.host(h).is_none() {
            bail!("{}", not_a_member(&mesh, h));
        }
    }
    let pass = passphrase(common, &mesh)?;
    let outcome = provision::run(
        &mesh,
        out,
        &provision::Options {
            now: now(common),
            force_renew: force,
            passphrase: pass.as_deref(),
            dry_run,
        },
    )?;
    Ok((mesh, outcome))
}

/// Why `name` cannot be selected with `--host`: unknown, or outside the mesh.
fn not_a_member(mesh: &Mesh, name: &str) -> String {
    if mesh.non_member(name).is_some() {
        format!("host `{name}` is not a mesh member (`mesh: false`): it has no certificate or bundle, only Terraform and user-data")
    } else {
        format!("host `{name}` is not in the inventory")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nebula-provision: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Validate { common } => {
            let mesh = load(&common)?;
            println!(
                "inventory OK: mesh `{}` on {}, {} host(s), v{} certificates",
                mesh.name,
                mesh.network,
                mesh.hosts.len(),
                match mesh.cert_version {
                    nebula_cert::Version::V1 => 1,
                    nebula_cert::Version::V2 => 2,
                }
            );
            for h in &mesh.hosts {
                println!(
                    "  {} {} groups [{}]{}{} inbound {} rule(s), outbound {} rule(s)",
                    h.name,
                    h.network,
                    h.groups.join(", "),
                    if h.lighthouse { " lighthouse" } else { "" },
                    if h.cloud_init.is_some() {
                        " cloud-init"
                    } else {
                        ""
                    },
                    h.inbound.len(),
                    h.outbound.len()
                );
            }
            for h in &mesh.non_members {
                println!("  {} outside the mesh (mesh: false)", h.name);
            }
            if let Some(p) = &mesh.proxmox {
                println!(
                    "  proxmox: {} VM(s) in terraform/{}/",
                    mesh.proxmox_vms().len(),
                    p.terraform_dir
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Init { common } => {
            let mesh = load(&common)?;
            match pki::load_ca(&mesh.pki)? {
                Some(ca) => println!(
                    "CA exists: `{}` fingerprint {} expires {}{}",
                    ca.cert.name(),
                    ca.cert.fingerprint_hex(),
                    provision::date(ca.cert.not_after()),
                    if ca.key_encrypted() {
                        ", key encrypted"
                    } else {
                        ""
                    }
                ),
                None => {
                    let pass = passphrase(&common, &mesh)?;
                    let ca = pki::create_ca(&mesh, pass.as_deref(), now(&common))?;
                    println!(
                        "CA created in {}: `{}` fingerprint {} expires {}",
                        mesh.pki.dir.display(),
                        ca.cert.name(),
                        ca.cert.fingerprint_hex(),
                        provision::date(ca.cert.not_after())
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Plan {
            common,
            out,
            detailed_exitcode,
        } => {
            let (_, outcome) = render(&common, &out.out, BTreeSet::new(), true)?;
            print!("{outcome}");
            Ok(if detailed_exitcode && outcome.changed() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Render { common, out, renew } => {
            let (_, outcome) = render(&common, &out.out, renew.into_iter().collect(), false)?;
            print!("{outcome}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Renew { common, out, host } => {
            let mesh = load(&common)?;
            let force: BTreeSet<String> = if host.is_empty() {
                mesh.hosts.iter().map(|h| h.name.clone()).collect()
            } else {
                host.into_iter().collect()
            };
            let (_, outcome) = render(&common, &out.out, force, false)?;
            print!("{outcome}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Apply {
            common,
            out,
            host,
            dry_run,
            root,
            systemctl,
            ssh,
            scp,
            check_seconds,
        } => {
            let (mesh, outcome) = render(&common, &out.out, BTreeSet::new(), dry_run)?;
            print!("{outcome}");
            let mut targets = Vec::new();
            if host.is_empty() {
                for h in &mesh.hosts {
                    if h.ssh.is_some() {
                        targets.push(h);
                    } else {
                        println!("host {}: no ssh section, skipped", h.name);
                    }
                }
            } else {
                for name in &host {
                    match mesh.host(name) {
                        Some(h) => targets.push(h),
                        None => bail!("{}", not_a_member(&mesh, name)),
                    }
                }
            }
            // Lighthouses first, so the others find them when they start.
            targets.sort_by_key(|h| !h.lighthouse);
            let opts = ApplyOptions {
                dry_run,
                root,
                systemctl,
                ssh_program: ssh,
                scp_program: scp,
                check_seconds,
            };
            let mut failed = 0;
            for h in targets {
                let files: Vec<_> = outcome
                    .rendered
                    .iter()
                    .filter(|f| {
                        f.rel
                            .components()
                            .next()
                            .is_some_and(|c| c.as_os_str() == h.name.as_str())
                    })
                    .cloned()
                    .collect();
                match apply_host(&mesh, h, &out.out.join(&h.name), &files, &opts) {
                    Ok(report) => print!("{report}"),
                    Err(e) => {
                        failed += 1;
                        eprintln!("nebula-provision: {e}");
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} host(s) failed");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status {
            common,
            host,
            renew_within,
            out,
            json,
            timeout,
            parallel,
            ssh,
        } => {
            let mesh = load(&common)?;
            let mut targets = Vec::new();
            if host.is_empty() {
                targets.extend(mesh.hosts.iter());
            } else {
                for name in &host {
                    match mesh.host(name) {
                        Some(h) => targets.push(h),
                        None => bail!("{}", not_a_member(&mesh, name)),
                    }
                }
            }
            let opts = collect::CollectOptions {
                ssh_program: ssh,
                timeout: std::time::Duration::from_secs(timeout.max(1)),
                parallel,
            };
            let answers = collect::ask_all(&targets, &opts);
            let rows = status::rows(
                &mesh,
                targets
                    .iter()
                    .map(|h| h.name.clone())
                    .zip(answers)
                    .collect(),
            );
            let local_ca = status::local_ca(&mesh, now(&common));
            let due = status::renewals(&rows, local_ca.as_ref(), renew_within);
            let inventory = common.inventory.display().to_string();
            let out = out.map(|o| o.display().to_string());
            if json {
                let cmds = status::renew_commands(&inventory, out.as_deref(), &due);
                let doc = status::json_document(&mesh, &rows, &due, renew_within, &cmds);
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{}", status::table(&mesh, &rows));
                println!();
                print!(
                    "{}",
                    status::renewals_text(
                        &rows,
                        &due,
                        renew_within,
                        &inventory,
                        out.as_deref(),
                        &mesh.pki.dir.display().to_string(),
                    )
                );
            }
            let down = rows.iter().any(|r| r.state == status::State::Down);
            Ok(if down {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

//! `exorun cap issue|delegate|show|revoke` (see `exorun_host::capability`).

use std::path::PathBuf;

use clap::Subcommand;
use exorun_host::capability;
use exorun_transport::identity;

use crate::Failed;

/// `exorun cap …`.
#[derive(Subcommand)]
pub(crate) enum CapCommand {
    /// A new capability: the issuer's key grants another key rights (a root of trust).
    Issue {
        /// The issuer's node key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        grant: GrantArgs,
        /// Where to write it (mode 0600; an existing file is left alone).
        #[arg(long)]
        out: PathBuf,
    },
    /// Pass on a capability, or a narrower part of it, to another key.
    Delegate {
        /// The capability held.
        file: PathBuf,
        /// The holder's node key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        grant: GrantArgs,
        /// Where to write the delegated capability (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a capability's links: issuers, subjects, windows, rights, caveats, ids.
    Show {
        /// The capability file.
        file: PathBuf,
    },
    /// Print the id a guard's revocation list names to revoke a link (and all below it).
    Revoke {
        /// The capability file.
        file: PathBuf,
        /// Which link (0: the root; default: the last).
        #[arg(long)]
        link: Option<usize>,
    },
}

/// What a new link grants.
#[derive(clap::Args)]
pub(crate) struct GrantArgs {
    /// The key it is for: `ed25519:<64 hex digits>`.
    #[arg(long, value_parser = parse_key)]
    to: identity::PublicKey,
    /// `EXPORT[/INTERFACE[#FUNCTION]]` (repeatable; a delegation without it passes on all).
    #[arg(long)]
    allow: Vec<String>,
    /// How long it lasts: `90m`, `12h`, `7d` (issue: a week by default; delegate: as long
    /// as what it delegates).
    #[arg(long)]
    expires_in: Option<String>,
    /// An opaque condition the callee may read (repeatable).
    #[arg(long)]
    caveat: Vec<String>,
}

fn grant_of(args: &GrantArgs) -> capability::Grant<'_> {
    capability::Grant {
        to: args.to,
        allow: &args.allow,
        expires_in: args.expires_in.as_deref(),
        caveats: &args.caveat,
    }
}

fn parse_key(text: &str) -> Result<identity::PublicKey, String> {
    identity::PublicKey::parse(text).map_err(|error| error.to_string())
}

pub(crate) fn cap(action: CapCommand) -> Result<(), Failed> {
    let failed = |error: capability::Error| Failed(vec![error.to_string()]);
    match action {
        CapCommand::Issue {
            key,
            grant: args,
            out,
        } => {
            if args.allow.is_empty() {
                return Err(Failed(vec![
                    "cap issue: give at least one --allow".to_owned(),
                ]));
            }
            let with = grant_of(&args);
            capability::issue(&key, &with, &out).map_err(failed)?;
            println!("{}", capability::show(&out).map_err(failed)?.trim_end());
        }
        CapCommand::Delegate {
            file,
            key,
            grant: args,
            out,
        } => {
            let with = grant_of(&args);
            capability::delegate(&file, &key, &with, &out).map_err(failed)?;
            println!("{}", capability::show(&out).map_err(failed)?.trim_end());
        }
        CapCommand::Show { file } => {
            println!("{}", capability::show(&file).map_err(failed)?.trim_end());
        }
        CapCommand::Revoke { file, link } => {
            println!("{}", capability::revoke(&file, link).map_err(failed)?);
        }
    }
    Ok(())
}

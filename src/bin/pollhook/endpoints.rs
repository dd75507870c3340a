//! `endpoints …`: list, show, add, update (with a secret rotation), pause, resume, remove, and
//! `secret`, which needs no config.

use std::io::Write;

use clap::{Args, Subcommand};
use pollhook::admin::endpoints::{DEFAULT_OVERLAP, parse_overlap};
use pollhook::admin::{EndpointChange, EndpointState, EndpointView, NewEndpoint};
use pollhook::store::Origin;

use crate::out::{self, say};
use crate::{Ctx, parse_headers, usage};

#[derive(Subcommand)]
pub enum EndpointsCommand {
    /// Every endpoint with its state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One endpoint (its secret shown only as a hint).
    Show {
        /// Endpoint name.
        name: String,
        /// Print JSON, as `GET /api/v1/endpoints/{name}` does.
        #[arg(long)]
        json: bool,
    },
    /// Register an endpoint.
    Add(AddEndpoint),
    /// Change an endpoint.
    Update(UpdateEndpoint),
    /// Remove an endpoint with its deliveries.
    Remove {
        /// Endpoint name.
        name: String,
    },
    /// Stop delivering to an endpoint; its deliveries wait.
    Pause {
        /// Endpoint name.
        name: String,
    },
    /// Deliver to a paused or disabled endpoint again.
    Resume {
        /// Endpoint name.
        name: String,
    },
    /// Print a new random secret for a signing scheme.
    Secret {
        /// jwt or standard-webhooks.
        #[arg(long, default_value = "jwt")]
        signing: String,
    },
}

#[derive(Args)]
pub struct AddEndpoint {
    /// Unique name.
    name: String,
    /// Where to POST.
    #[arg(long)]
    url: String,
    /// Signing secret; generated and printed once if omitted.
    #[arg(long, env = "POLLHOOK_ENDPOINT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// jwt or standard-webhooks.
    #[arg(long, default_value = "jwt")]
    signing: String,
    /// `source.resource` pattern (repeatable; `*` wildcards); default: all.
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// created, updated or deleted (repeatable); default: all.
    #[arg(long = "action")]
    actions: Vec<String>,
    /// Extra header `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Request timeout (e.g. `10s`).
    #[arg(long)]
    timeout: Option<String>,
    /// Body format: json (default) or xml (standard-webhooks signing only).
    #[arg(long)]
    format: Option<String>,
    /// Register it paused.
    #[arg(long)]
    paused: bool,
    /// Also send it the current state of its resources as `created` events.
    #[arg(long)]
    backfill: bool,
}

#[derive(Args)]
pub struct UpdateEndpoint {
    /// Endpoint name.
    name: String,
    /// New URL.
    #[arg(long)]
    url: Option<String>,
    /// New secret.
    #[arg(long, conflicts_with = "rotate_secret")]
    secret: Option<String>,
    /// Generate a new secret (printed once).
    #[arg(long)]
    rotate_secret: bool,
    /// How long the old secret keeps signing too (standard-webhooks sends both signatures).
    #[arg(long, default_value = DEFAULT_OVERLAP)]
    overlap: String,
    /// Replace the resource patterns.
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// Replace the action filter.
    #[arg(long = "action")]
    actions: Vec<String>,
    /// New body format: json or xml (xml needs standard-webhooks signing).
    #[arg(long)]
    format: Option<String>,
}

/// `active`, `paused`, or `disabled: why`, as the tables show it.
pub fn state_text(state: EndpointState, reason: Option<&str>) -> String {
    match (state, reason) {
        (EndpointState::Disabled, Some(reason)) => format!("disabled: {reason}"),
        (state, _) => state.as_str().to_owned(),
    }
}

/// A repeatable flag given at least once.
fn given(list: Vec<String>) -> Option<Vec<String>> {
    (!list.is_empty()).then_some(list)
}

/// `pollhook endpoints …`.
pub async fn command(ctx: &Ctx, command: EndpointsCommand) -> anyhow::Result<()> {
    let admin = ctx.admin();
    let warn_config = |name: &str| {
        if admin.from_config(name) {
            eprintln!(
                "note: endpoint {name} is defined in {}; this lasts across restarts until its definition there changes.",
                ctx.config.file.display()
            );
        }
    };
    match command {
        EndpointsCommand::List { json: true } => out::json(&admin.endpoints().await?)?,
        EndpointsCommand::List { json: false } => {
            let list = admin.endpoints().await?;
            if list.is_empty() {
                say!("No endpoints. Add one with `pollhook endpoints add NAME --url URL`.");
            } else {
                let rows = list.iter().map(|e| {
                    vec![
                        e.name.clone(),
                        e.signing.to_owned(),
                        e.origin.clone(),
                        e.url.clone(),
                        e.resources.join(","),
                        state_text(e.state, e.disabled_reason.as_deref()),
                    ]
                });
                out::table(
                    &["NAME", "SIGNING", "ORIGIN", "URL", "RESOURCES", "STATE"],
                    &[],
                    rows,
                )?;
            }
        }
        EndpointsCommand::Show { name, json } => {
            let view = admin.endpoint(&name).await?;
            if json {
                out::json(&view)?;
            } else {
                show(&view)?;
            }
        }
        EndpointsCommand::Add(args) => {
            let new = NewEndpoint {
                name: args.name,
                url: args.url,
                secret: args.secret,
                signing: args.signing,
                resources: given(args.resources),
                actions: given(args.actions),
                active: !args.paused,
                headers: parse_headers(&args.headers)?,
                timeout: args.timeout,
                format: args.format,
                backfill: args.backfill,
                origin: Origin::Cli,
            };
            let created = admin.add_endpoint(new).await?;
            let name = &created.endpoint.name;
            say!("Endpoint {name} added.");
            if let Some(secret) = &created.secret {
                say!("Its secret (shown once; give it to the receiver): {secret}");
            }
            if let Some(n) = created.backfilled {
                say!("Backfill: {n} item(s) queued for {name} as created events.");
            }
        }
        EndpointsCommand::Update(args) => {
            warn_config(&args.name);
            let overlap =
                parse_overlap(&args.overlap).map_err(|e| usage(format!("--overlap: {e}")))?;
            let change = EndpointChange {
                url: args.url,
                secret: args.secret,
                overlap: Some(overlap),
                resources: given(args.resources),
                actions: given(args.actions),
                format: args.format,
                ..EndpointChange::default()
            };
            admin.update_endpoint(&args.name, change).await?;
            say!("Endpoint {} updated.", args.name);
            if args.rotate_secret {
                let rotated = admin.rotate_secret(&args.name, overlap).await?;
                say!("New secret (shown once): {}", rotated.secret);
                say!(
                    "The old one stays valid for {} (standard-webhooks requests carry both signatures).",
                    args.overlap
                );
            }
        }
        EndpointsCommand::Remove { name } => {
            warn_config(&name);
            admin.remove_endpoint(&name).await?;
            say!("Endpoint {name} removed, with its deliveries.");
        }
        EndpointsCommand::Pause { name } => {
            warn_config(&name);
            admin.set_active(&name, false).await?;
            say!("Endpoint {name} paused; its deliveries wait.");
        }
        EndpointsCommand::Resume { name } => {
            admin.set_active(&name, true).await?;
            say!("Endpoint {name} resumed.");
        }
        EndpointsCommand::Secret { signing } => print_secret(&signing)?,
    }
    Ok(())
}

/// One endpoint, a line per setting, in the view's order.
fn show(view: &EndpointView) -> anyhow::Result<()> {
    let list = |items: &[String], empty: &str| {
        if items.is_empty() {
            empty.to_owned()
        } else {
            items.join(", ")
        }
    };
    say!("name        {}", view.name);
    say!("url         {}", view.url);
    say!("signing     {}", view.signing);
    say!("secret      {} (hint)", view.secret_hint);
    say!("resources   {}", list(&view.resources, "all"));
    say!("actions     {}", list(&view.actions, "all"));
    say!(
        "state       {}",
        state_text(view.state, view.disabled_reason.as_deref())
    );
    say!("origin      {}", view.origin);
    say!("headers     {}", list(&view.headers, "none"));
    match view.timeout_ms {
        Some(ms) => say!("timeout     {ms} ms"),
        None => say!("timeout     the [delivery] default"),
    }
    Ok(())
}

/// `pollhook endpoints secret`.
pub fn print_secret(signing: &str) -> anyhow::Result<()> {
    let scheme: pollhook::sign::Scheme = signing
        .parse()
        .map_err(|e| usage(format!("--signing: {e}")))?;
    say!("{}", pollhook::sign::generate_secret(scheme));
    Ok(())
}

//! The management subcommands: agents, sites and API tokens, written straight to the store in
//! the data directory. They need the server stopped (the embedded store allows one process).

use anyhow::Context as _;
use engage::{Accounts, RedbStore, Role, Store};
use std::sync::Arc;

use crate::config::{AgentCommand, CommonSettings, SiteCommand, TokenCommand};

async fn open(settings: &CommonSettings) -> anyhow::Result<Accounts> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            settings.data_dir.display()
        )
    })?;
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&settings.data_dir).await?);
    Ok(Accounts::new(store))
}

pub async fn agent(settings: &CommonSettings, command: AgentCommand) -> anyhow::Result<()> {
    let accounts = open(settings).await?;
    match command {
        AgentCommand::Create {
            email,
            name,
            role,
            password,
            sites,
        } => {
            let role: Role = role
                .parse()
                .map_err(|error| anyhow::anyhow!("--role: {error}"))?;
            for site in &sites {
                if accounts.store().site(site).await?.is_none() {
                    anyhow::bail!("--sites: no site with key {site:?}");
                }
            }
            let mut agent = accounts
                .create_agent(&email, &name, role, &password)
                .await?;
            for site in &sites {
                agent = accounts.grant_site(agent.id, site).await?;
            }
            println!(
                "created {} {} <{}> (id {})",
                role_name(agent.role),
                agent.name,
                agent.email,
                agent.id
            );
        }
        AgentCommand::List => {
            for agent in accounts.store().list_agents().await? {
                println!(
                    "{:>4}  {:<6}  {:<32}  {}{}",
                    agent.id,
                    role_name(agent.role),
                    agent.email,
                    agent.name,
                    if agent.sites.is_empty() {
                        String::new()
                    } else {
                        format!("  sites: {}", agent.sites.join(","))
                    }
                );
            }
        }
        AgentCommand::Grant { email, site } => {
            let agent = accounts
                .store()
                .agent_by_email(&email)
                .await?
                .with_context(|| format!("no agent with email {email:?}"))?;
            accounts.grant_site(agent.id, &site).await?;
            println!("{email} may now see site {site}");
        }
    }
    Ok(())
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Agent => "agent",
    }
}

pub async fn site(settings: &CommonSettings, command: SiteCommand) -> anyhow::Result<()> {
    let accounts = open(settings).await?;
    match command {
        SiteCommand::Create { name, origins, key } => {
            let site = accounts
                .create_site(&name, &origins, key.as_deref())
                .await?;
            println!("created site {:?} with key {}", site.name, site.key);
            println!();
            println!(
                "Paste this before </head> on every page (replace HOST with Porchlight's address):"
            );
            println!("{}", embed_snippet("https://HOST", &site.key));
        }
        SiteCommand::List => {
            for site in accounts.store().list_sites().await? {
                println!(
                    "{:<20}  {:<32}  {}",
                    site.key,
                    site.name,
                    site.allowed_origins.join(",")
                );
            }
        }
    }
    Ok(())
}

pub async fn token(settings: &CommonSettings, command: TokenCommand) -> anyhow::Result<()> {
    let accounts = open(settings).await?;
    match command {
        TokenCommand::Create { email, name } => {
            let agent = accounts
                .store()
                .agent_by_email(&email)
                .await?
                .with_context(|| format!("no agent with email {email:?}"))?;
            let (record, secret) = accounts.create_api_token(agent.id, &name).await?;
            println!(
                "token {} for {email} (id {}); it is shown only now:",
                record.name, record.id
            );
            println!("{secret}");
        }
        TokenCommand::List => {
            for token in accounts.store().list_api_tokens().await? {
                println!(
                    "{:>4}  agent {:>4}  {}",
                    token.id, token.agent_id, token.name
                );
            }
        }
        TokenCommand::Revoke { id } => {
            if accounts.store().delete_api_token(id).await? {
                println!("revoked token {id}");
            } else {
                anyhow::bail!("no API token with id {id}");
            }
        }
    }
    Ok(())
}

/// The snippet a site owner pastes into their pages.
pub fn embed_snippet(base_url: &str, site_key: &str) -> String {
    format!(
        "<script>\n\
(function(w,d,s,u){{w.porchlight=w.porchlight||function(){{(w.porchlight.q=w.porchlight.q||[]).push(arguments)}};\n\
var e=d.createElement(s);e.async=1;e.src=u;d.head.appendChild(e)}})(window,document,'script','{base_url}/widget.js');\n\
porchlight('init', {{site: '{site_key}'}});\n\
</script>"
    )
}

//! `gha-dispatcher init`: a starting config and its secret files (0600) from flags, asking for
//! what is missing when run at a terminal. Without an App it runs the first half of GitHub's
//! App manifest flow (prints the manifest and the page that creates the App, writes
//! `app-manifest.json` and `create-app.html`); given the `--code` GitHub returns, it converts
//! it (`conversion`) and writes the App's key, the webhook secret and the config (`files`).

pub mod conversion;
pub mod files;
pub mod manifest;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};

use files::{ensure_secret, write_private, ConfigValues};
use manifest::Owner;

/// `gha-dispatcher init`'s flags.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where config.toml and the secret files go.
    #[arg(long, default_value = "/etc/gha-dispatcher")]
    pub dir: PathBuf,
    /// The organization whose runners the App manages (org runners).
    #[arg(long, conflicts_with = "user")]
    pub org: Option<String>,
    /// A user account whose repositories get runners (repository runners; needs --repository).
    #[arg(long)]
    pub user: Option<String>,
    /// A repository (`owner/name`) whose queue is polled for missed webhooks; repeatable.
    #[arg(long = "repository")]
    pub repositories: Vec<String>,
    /// The public URL GitHub posts webhooks to (this dispatcher's `/webhook`).
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// The Unix user runner jobs run as (never root nor a system account).
    #[arg(long)]
    pub runner_user: Option<String>,
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: String,
    #[arg(long, default_value = "https://api.github.com")]
    pub api_url: String,
    /// GitHub's web UI (default: derived from --api-url).
    #[arg(long)]
    pub web_url: Option<String>,
    /// Extra CA for GitHub's certificate (GitHub Enterprise Server with a private CA).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The App's name on GitHub (unique on GitHub).
    #[arg(long, default_value = "spank-gha runners")]
    pub app_name: String,
    /// The code GitHub appended to the redirect address after creating the App.
    #[arg(long)]
    pub code: Option<String>,
    /// An App made by hand instead of the manifest flow (with --private-key-file).
    #[arg(long, requires = "private_key_file", conflicts_with = "code")]
    pub app_id: Option<u64>,
    #[arg(long, requires = "app_id")]
    pub private_key_file: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', default_value = "linux,x64")]
    pub labels: Vec<String>,
    #[arg(long, default_value_t = 4)]
    pub max_runners: u32,
    #[arg(long, default_value = "/usr/libexec/spank-gha/gha-runner-job")]
    pub job_script: PathBuf,
    /// Replace an existing config.toml (the package ships an example there).
    #[arg(long)]
    pub force: bool,
}

/// Runs `init`; what it wrote and the next step go to stdout.
pub fn run(mut args: InitArgs) -> anyhow::Result<()> {
    ask_for_missing(&mut args)?;
    let owner = owner_of(&args)?;
    let webhook_url = args.webhook_url.clone().context("give --webhook-url")?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let app_id = match (&args.code, args.app_id) {
        (Some(code), _) => convert_code(&args, code)?,
        (None, Some(id)) => adopt_app(&args, id)?,
        (None, None) => {
            print_manifest_step(&args, &owner, &webhook_url)?;
            match ask("code (from the address GitHub sent your browser to)")? {
                Some(code) => convert_code(&args, &code)?,
                None => return Ok(()),
            }
        }
    };
    write_config(&args, owner, app_id)
}

fn owner_of(args: &InitArgs) -> anyhow::Result<Owner> {
    match (&args.org, &args.user) {
        (Some(org), _) => Ok(Owner::Org(org.clone())),
        (None, Some(user)) if !args.repositories.is_empty() => Ok(Owner::User(user.clone())),
        (None, Some(_)) => bail!("--user needs at least one --repository"),
        (None, None) => bail!("give --org ORG (organization runners) or --user LOGIN"),
    }
}

/// At a terminal, asks for each required value not given as a flag.
fn ask_for_missing(args: &mut InitArgs) -> anyhow::Result<()> {
    if args.org.is_none() && args.user.is_none() {
        args.org = ask("GitHub organization")?;
    }
    if args.webhook_url.is_none() {
        args.webhook_url = ask("public webhook URL (https://<this host>/webhook)")?;
    }
    if args.runner_user.is_none() {
        args.runner_user = ask("Unix user runner jobs run as")?;
    }
    Ok(())
}

/// One answer from the terminal; `None` when stdin is not one or the answer is empty.
fn ask(question: &str) -> anyhow::Result<Option<String>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    print!("{question}: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let answer = line.trim().to_string();
    Ok((!answer.is_empty()).then_some(answer))
}

fn print_manifest_step(args: &InitArgs, owner: &Owner, webhook_url: &str) -> anyhow::Result<()> {
    let redirect = redirect_url(webhook_url);
    let document = manifest::manifest(&args.app_name, owner, webhook_url, &redirect);
    let web = args
        .web_url
        .clone()
        .unwrap_or_else(|| manifest::web_url_for(&args.api_url));
    let link = manifest::create_url(&web, owner, "gha-dispatcher-init");
    let manifest_path = args.dir.join("app-manifest.json");
    let page_path = args.dir.join("create-app.html");
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&document)? + "\n",
    )?;
    std::fs::write(&page_path, manifest::form_page(&link, &document))?;
    println!("The GitHub App's manifest ({}):", manifest_path.display());
    println!("{}", serde_json::to_string_pretty(&document)?);
    println!();
    println!(
        "Create the App for {}: open {} in a browser",
        owner.login(),
        page_path.display()
    );
    println!("(it posts the manifest to {link}), then press \"Create GitHub App\".");
    println!("GitHub then sends your browser to {redirect}?code=CODE&state=...; run:");
    println!("  gha-dispatcher init <the same flags> --code CODE");
    Ok(())
}

/// Where GitHub sends the browser after creating the App (the code is in that address).
fn redirect_url(webhook_url: &str) -> String {
    let base = webhook_url.trim_end_matches('/');
    format!("{}/", base.strip_suffix("/webhook").unwrap_or(base))
}

fn convert_code(args: &InitArgs, code: &str) -> anyhow::Result<u64> {
    let ca = match &args.ca_file {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("{}", path.display()))?),
        None => None,
    };
    let app = conversion::convert(&args.api_url, code.trim(), ca.as_deref())?;
    write_private(&args.dir.join("app-private-key.pem"), &app.pem, true)?;
    write_private(
        &args.dir.join("webhook-secret"),
        &format!("{}\n", app.webhook_secret),
        true,
    )?;
    println!(
        "GitHub App {} (id {}) created: {}",
        app.slug, app.id, app.html_url
    );
    println!(
        "wrote {}/app-private-key.pem and webhook-secret (0600)",
        args.dir.display()
    );
    Ok(app.id)
}

/// An App made by hand: its key is copied in; the webhook secret is made unless present (then
/// paste it into the App's settings).
fn adopt_app(args: &InitArgs, id: u64) -> anyhow::Result<u64> {
    let source = args
        .private_key_file
        .as_deref()
        .context("give --private-key-file")?;
    let key = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let target = args.dir.join("app-private-key.pem");
    if source != target {
        write_private(&target, &key, true)?;
    }
    if ensure_secret(&args.dir.join("webhook-secret"))? {
        println!(
            "wrote a new webhook secret to {}: set it in the App's settings",
            args.dir.join("webhook-secret").display()
        );
    }
    Ok(id)
}

fn write_config(args: &InitArgs, owner: Owner, app_id: u64) -> anyhow::Result<()> {
    let runner_user = args.runner_user.clone().context("give --runner-user")?;
    ensure_secret(&args.dir.join("admin-token"))?;
    let path = args.dir.join("config.toml");
    let text = files::config_text(&ConfigValues {
        listen: args.listen.clone(),
        dir: args.dir.clone(),
        api_url: args.api_url.clone(),
        ca_file: args.ca_file.clone(),
        app_id,
        owner,
        repositories: args.repositories.clone(),
        runner_user,
        job_script: args.job_script.clone(),
        labels: args.labels.clone(),
        max_runners: args.max_runners,
    });
    write_private(&path, &text, args.force)?;
    println!(
        "wrote {} and {}/admin-token (0600)",
        path.display(),
        args.dir.display()
    );
    println!(
        "next: gha-dispatcher check-config --config {}",
        path.display()
    );
    Ok(())
}

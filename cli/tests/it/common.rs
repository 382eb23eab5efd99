//! What the CLI tests share: the `keyfleet` binary run as a subprocess, the
//! emulator's one organization, and its one keyfleet deployment.
//!
//! The deployment is what `keyfleet bootstrap` makes, once per emulator:
//! the coordinator Lambda (its role from the Terraform module's policy
//! template) and the agent StackSet, whose Lambdas the emulator runs. The
//! emulator enforces the identity policies of keyfleet's roles from the
//! moment it is deployed, so every test runs the system as AWS would run
//! it. Tests run concurrently against it, so each one creates the member
//! accounts it runs on and names them (`--accounts`), reads reports by run
//! id (never `latest`, which another test may have moved), and scopes any
//! fault to its own names.
//! Owner addresses follow the user names (`owner-<user>@example.com`) and
//! the outbox is shared, so each test names its users apart from the others'.

use keyfleet_testkit::Emulator;
use std::path::PathBuf;
use std::process::{Command, Output};

pub fn emu() -> &'static Emulator {
    Emulator::shared().expect("emulator")
}

/// The `keyfleet` binary with one configuration file.
pub struct Cli {
    pub config: PathBuf,
    pub endpoint: String,
    /// Holds the configuration file.
    pub _dir: Option<tempfile::TempDir>,
}

impl Cli {
    /// `keyfleet --config <file> --endpoint-url <emulator>`, with no AWS
    /// credentials from the environment (the emulator's admin ones apply).
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keyfleet"));
        c.arg("--config")
            .arg(&self.config)
            .args(["--endpoint-url", &self.endpoint])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env("KEYFLEET_LOG", "warn");
        c
    }

    /// Runs `keyfleet <args>` and returns what it did.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("keyfleet runs")
    }

    /// Runs `keyfleet <args>`, which must succeed; returns its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "keyfleet {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs `keyfleet <args>`, which must fail; returns (stdout, stderr).
    pub fn fail(&self, args: &[&str]) -> (String, String) {
        let out = self.output(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "keyfleet {args:?} failed to fail:\n{stdout}\n{stderr}"
        );
        (stdout, stderr)
    }

    /// A stored report, by run id, as JSON.
    pub fn report(&self, run_id: &str) -> serde_json::Value {
        serde_json::from_str(&self.run(&["report", "--run", run_id, "--format", "json"]))
            .expect("report JSON")
    }
}

/// Held by the tests that set the emulator's fault rules: the rules are
/// global to the emulator and each `set_faults` replaces them.
pub async fn faults_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    FAULTS.lock().await
}

/// The run id a report table or an error names (`keyfleet run <id> ...`,
/// `run <id> failed: ...`).
pub fn run_id_in(text: &str) -> String {
    text.split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .unwrap_or_else(|| panic!("no run id in:\n{text}"))
        .to_string()
}

/// The ExternalId the deployment's org reader trust requires (as the
/// org-reader module's `external_id` does): every deployed run lists the
/// organization through a trust that needs it.
pub const ORG_READER_EXTERNAL_ID: &str = "keyfleet-e2e-external-id";

/// The emulator's keyfleet deployment (bootstrapped on first use), as the
/// operator's command line sees it. Like most organizations it excludes
/// the management account and an OU (an empty one here), so every run
/// walks that OU as in production.
pub async fn deployment() -> &'static Cli {
    static CLI: tokio::sync::OnceCell<Cli> = tokio::sync::OnceCell::const_new();
    CLI.get_or_init(|| async {
        let management = organization().await;
        deploy(emu(), &management, "").await
    })
    .await
}

/// `keyfleet bootstrap` on `emu`, whose organization's management account
/// is `management`, with `extra` (TOML sections) added to the deployment's
/// configuration; IAM enforcement on once it is deployed.
pub async fn deploy(emu: &Emulator, management: &str, extra: &str) -> Cli {
    let org = aws_sdk_organizations::Client::new(&emu.config());
    let root = org.list_roots().send().await.expect("ListRoots").roots()[0]
        .id()
        .expect("root id")
        .to_string();
    let excluded = org
        .create_organizational_unit()
        .parent_id(root)
        .name("excluded")
        .send()
        .await
        .expect("CreateOrganizationalUnit")
        .organizational_unit()
        .and_then(|o| o.id().map(str::to_string))
        .expect("OU id");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("keyfleet.toml");
    std::fs::write(
        &config,
        format!(
            "[org]\nexclude_accounts = [\"{management}\"]\nexclude_ous = [\"{excluded}\"]\n\
             org_reader_external_id = \"{ORG_READER_EXTERNAL_ID}\"\n\n\
             [mail]\nsender = \"keyfleet@example.com\"\nsecurity_team = [\"sec@example.com\"]\n\n{extra}"
        ),
    )
    .expect("write config");
    let cli = Cli {
        config,
        endpoint: emu.endpoint().to_string(),
        _dir: Some(dir),
    };
    let out = cli.run(&["bootstrap"]);
    assert!(out.contains("coordinator key id"), "{out}");
    emu.enforce_iam(true).expect("IAM enforcement on");
    cli
}

/// The organization (created once per emulator) and its management account.
pub async fn organization() -> String {
    static ORG: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    ORG.get_or_init(|| organization_on(emu())).await.clone()
}

/// Creates `emu`'s organization if it has none; returns its management
/// account.
pub async fn organization_on(emu: &Emulator) -> String {
    let org = aws_sdk_organizations::Client::new(&emu.config());
    if let Err(e) = org.create_organization().send().await {
        assert!(
            e.as_service_error()
                .is_some_and(|s| s.is_already_in_organization_exception()),
            "CreateOrganization: {}",
            aws_sdk_organizations::error::DisplayErrorContext(&e)
        );
    }
    org.describe_organization()
        .send()
        .await
        .expect("DescribeOrganization")
        .organization()
        .and_then(|o| o.master_account_id())
        .expect("management account")
        .to_string()
}

/// A new member account of the organization, with the agent the StackSet
/// deploys to it; returns its id.
pub async fn create_account(label: &str) -> String {
    deployment().await;
    create_account_on(emu(), label).await
}

/// A new member account of `emu`'s organization (deployed already).
pub async fn create_account_on(emu: &Emulator, label: &str) -> String {
    let s = keyfleet_protocol::Token::generate().0[..10].to_string();
    let org = aws_sdk_organizations::Client::new(&emu.config());
    org.create_account()
        .account_name(format!("{label}-{s}"))
        .email(format!("aws+{label}-{s}@example.com"))
        .send()
        .await
        .expect("CreateAccount")
        .create_account_status()
        .and_then(|s| s.account_id())
        .expect("account id")
        .to_string()
}

/// A new member account (see [`create_account`]) with one user whose only
/// key, 85 days old and used yesterday, is due for rotation.
pub struct DueUser {
    pub account: String,
    /// The account's IAM, as the test kit.
    pub iam: aws_sdk_iam::Client,
    /// The user's owner address (its `Email` tag).
    pub owner: String,
    /// The due key.
    pub key: String,
}

/// [`DueUser`] named `name` in a new account labelled `label`.
pub async fn account_with_due_user(label: &str, name: &str) -> DueUser {
    use keyfleet_testkit::seed::{self, key, user};
    let account = create_account(label).await;
    let iam = iam_of(&account).await;
    let seeded = seed::populate(
        emu(),
        &iam,
        &account,
        &[user(name, vec![key(85, true, Some(1))])],
    )
    .await
    .expect("seed");
    DueUser {
        owner: format!("owner-{name}@example.com"),
        key: seeded[name][0].clone(),
        account,
        iam,
    }
}

/// An IAM client acting in `account` as the test kit (never enforced).
pub async fn iam_of(account: &str) -> aws_sdk_iam::Client {
    iam_on(emu(), account).await
}

/// An IAM client acting in `account` of `emu` as the test kit.
pub async fn iam_on(emu: &Emulator, account: &str) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(
        &emu.config_for_account(account)
            .await
            .expect("assume a role in the account"),
    )
}

/// Starts a run on `account` as an operator does (the coordinator's
/// `{"action":"run"}` event), lets the emulator deliver the job, the agent's
/// invocation and the result (up to `settle_s` seconds), and returns the
/// run id.
pub async fn run_through_coordinator(account: &str, settle_s: u64) -> String {
    let answer = aws_sdk_lambda::Client::new(&emu().config())
        .invoke()
        .function_name("keyfleet-coordinator")
        .payload(aws_sdk_lambda::primitives::Blob::new(
            serde_json::json!({"action": "run", "accounts": [account]}).to_string(),
        ))
        .send()
        .await
        .expect("Invoke");
    assert!(answer.function_error().is_none(), "{answer:?}");
    let started: serde_json::Value =
        serde_json::from_slice(answer.payload().expect("payload").as_ref()).expect("JSON");
    let run_id = started["run_id"].as_str().expect("run id").to_string();
    emu()
        .settle(&[account, keyfleet_testkit::DEFAULT_ACCOUNT], settle_s)
        .expect("settled");
    run_id
}

/// `keyfleet serve` running on a free loopback port under the deployed
/// API role (`keyfleet-api`, so the emulator holds it to its policy), with
/// the deployment's configuration plus `api` (the body of an `[api]`
/// section). Killed when dropped.
pub struct Served {
    child: std::process::Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Served {
    pub fn start(cli: &Cli, api: &str) -> Served {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("keyfleet.toml");
        let deployed = std::fs::read_to_string(&cli.config).expect("deployment config");
        std::fs::write(&config, format!("{deployed}\n[api]\n{api}\n")).expect("write config");
        let role = format!(
            "arn:aws:iam::{}:role/keyfleet-api",
            keyfleet_testkit::DEFAULT_ACCOUNT
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyfleet"))
            .arg("--config")
            .arg(&config)
            .args(["--endpoint-url", &cli.endpoint])
            .args(["serve", "--listen", "127.0.0.1:0", "--role-arn", &role])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env("KEYFLEET_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("keyfleet serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read serve's first line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("serve did not start: {line:?}"))
            .to_string();
        Served {
            child,
            base,
            _dir: dir,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status, headers we look at, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// An HTTP client for the served API: 4xx and 5xx are answers, not
/// errors, and redirects are not followed (a login answers 303).
fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// What the tests look at in a response.
fn answer(mut resp: ureq::http::Response<ureq::Body>) -> Answer {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let set_cookie = header("set-cookie");
    Answer {
        status: resp.status().as_u16(),
        content_type,
        retry_after,
        set_cookie,
        body: resp.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// One request to a served API: `method path` with an optional API key,
/// extra headers and a JSON body.
pub fn call(
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> Answer {
    let url = format!("{base}{path}");
    let mut req = ureq::http::Request::builder().method(method).uri(&url);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    for (h, v) in headers {
        req = req.header(*h, *v);
    }
    let resp = match body {
        Some(b) => http().run(
            req.header("content-type", "application/json")
                .body(b.to_string())
                .expect("request"),
        ),
        None => http().run(req.body(()).expect("request")),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    answer(resp)
}

/// A browser's form post (`application/x-www-form-urlencoded`).
pub fn post_form(base: &str, path: &str, form: &str) -> Answer {
    let resp = http()
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(form)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    answer(resp)
}

/// Debian's Chromium, which the browser tests drive with Playwright.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether Chromium is there for a browser test; without it the test is
/// skipped only when `KEYFLEET_SKIP_BROWSER=1` says so, and fails otherwise.
pub fn chromium_present() -> bool {
    if std::path::Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var("KEYFLEET_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("{CHROMIUM} missing and KEYFLEET_SKIP_BROWSER=1: browser test skipped");
        return false;
    }
    panic!(
        "{CHROMIUM} is missing: install it (`apt-get install -y chromium`, as scripts/test.sh \
         does) or set KEYFLEET_SKIP_BROWSER=1 to skip the browser test"
    );
}

impl Served {
    /// `keyfleet serve` with one API key of the read scope, named `id`;
    /// returns the server and the key.
    pub fn for_reading(cli: &Cli, id: &str) -> (Served, String) {
        let (key, entry) = keyfleet_api::keys::generate(id, &[keyfleet_api::Scope::Read]);
        let served = Served::start(
            cli,
            &format!(
                "keys = [{{ id = \"{}\", sha256 = \"{}\", scopes = [\"read\"] }}]",
                entry.id, entry.sha256
            ),
        );
        (served, key)
    }
}

/// Runs `tests/browser/<script>` with `args` (the emulator's venv has
/// Playwright) and returns the one JSON object it prints.
pub fn browser_script(script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("tests/emulator/.venv/bin/python"))
        .arg(root.join("tests/browser").join(script))
        .args(args)
        .output()
        .expect("run the browser script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser script {script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("JSON")
}

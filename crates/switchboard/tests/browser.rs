//! The web console in a real browser: Debian's Chromium, headless, driven through
//! chromedriver over WebDriver, against `switchboard serve` as its own process with users
//! from a config file. One run walks the console's main paths (log in, channels, the
//! character limit, hashtags, a group between two browsers, a direct message, a
//! denial, the admin page and stop) and saves a screenshot of each main page under
//! `browser-screenshots/` in the test's target directory.
//!
//! chromedriver and chromium must be installed (`apt-get install chromium
//! chromium-driver`); without them the test fails saying so.
#![cfg(unix)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use switchboard_server::security::hash_password;

mod support;

use support::{
    ConfigServer, KillOnDrop, cli_at, read_lines, subscriptions_at, wait_exit,
    wait_for_subscriber_at,
};

/// How long any one thing may take to show in the page.
const WAIT: Duration = Duration::from_secs(5);

const PASSWORD: &str = "correct horse";

fn config(dir: &Path) -> PathBuf {
    let hash = hash_password(PASSWORD.as_bytes()).expect("hash");
    let user = |name: &str, role: &str| {
        format!("[[users]]\nname = \"{name}\"\npassword = \"{hash}\"\nroles = [\"{role}\"]\n")
    };
    let text = format!(
        "[listen]\ntcp = [\"127.0.0.1:0\"]\n[storage]\nmemory = true\n\
         [auth]\nanonymous_role = \"guest\"\n\
         {}{}{}{}\
         [roles.guest]\nadmin = [\"clients\"]\n\
         [roles.member]\npublish = {{ allow = [\">\"] }}\nsubscribe = {{ allow = [\">\", \"#*\"] }}\n\
         history = {{ allow = [\">\", \"#*\"] }}\nrelay = {{ allow = [\"*\"] }}\nadmin = [\"clients\"]\n\
         [roles.member.create_channel]\nallow = [\">\"]\n\
         [roles.member.groups]\ncreate = {{ allow = [\"*\"] }}\njoin = {{ allow = [\"*\"] }}\n\
         post = {{ allow = [\"*\"] }}\nread = {{ allow = [\"*\"] }}\n\
         [roles.reader]\nsubscribe = {{ allow = [\"news\"] }}\nhistory = {{ allow = [\"news\"] }}\n\
         [roles.admin]\npublish = {{ allow = [\">\"] }}\nsubscribe = {{ allow = [\">\"] }}\n\
         history = {{ allow = [\">\"] }}\nadmin = [\"stop\", \"reload\", \"stats\", \"clients\"]\n\
         [roles.admin.create_channel]\nallow = [\">\"]\n",
        user("alice", "member"),
        user("bob", "member"),
        user("eve", "reader"),
        user("root", "admin"),
    );
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// The CLI logged in as `user`.
fn cli(server: &ConfigServer, user: &str) -> assert_cmd::Command {
    let mut command = cli_at(&server.tcp, user);
    command
        .env("SWITCHBOARD_USER", user)
        .env("SWITCHBOARD_PASSWORD", PASSWORD);
    command
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// chromedriver on a free port of its own, stopped when dropped.
struct Driver {
    _process: KillOnDrop,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let chromedriver = find_program("chromedriver").unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed: the browser tests need it and Chromium \
                 (on Debian: apt-get install chromium chromium-driver)"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let process = StdCommand::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let process = KillOnDrop(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A headless Chromium with a profile of its own.
    async fn browser(&self, profile: &Path) -> Client {
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|name| find_program(name))
            .unwrap_or_else(|| {
                panic!("Chromium is not installed (on Debian: apt-get install chromium chromium-driver)")
            });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1100,800",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("a screenshot directory");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("save the screenshot");
}

/// Waits until an element matching `css` holds `text`, and returns it.
async fn wait_text(browser: &Client, css: &str, text: &str) -> Element {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        seen.clear();
        if let Ok(elements) = browser.find_all(Locator::Css(css)).await {
            for element in elements {
                if let Ok(shown) = element.text().await {
                    if shown.contains(text) {
                        return element;
                    }
                    seen.push(shown);
                }
            }
        }
        if Instant::now() >= deadline {
            let banner = match browser.find(Locator::Css("#error")).await {
                Ok(banner) => banner.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!(
                "no {css} showing {text:?} within {WAIT:?}; saw {seen:?}; error banner: {banner:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn find(browser: &Client, css: &str) -> Element {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no {css}: {error}"))
}

async fn type_into(browser: &Client, css: &str, text: &str) {
    let element = find(browser, css).await;
    element.clear().await.expect("clear");
    element.send_keys(text).await.expect("type");
}

async fn go(browser: &Client, base: &str, route: &str) {
    browser
        .goto(&format!("{base}/{route}"))
        .await
        .expect("navigate");
}

/// Logs in with the keyboard only: the user field has focus, Tab moves to the password,
/// Enter submits.
async fn log_in(browser: &Client, base: &str, user: &str) {
    go(browser, base, "").await;
    find(browser, "#login-form").await;
    let focused = browser.active_element().await.expect("a focused element");
    assert_eq!(
        focused.attr("id").await.expect("id").as_deref(),
        Some("login-user"),
        "the login page starts at the user field"
    );
    focused
        .send_keys(&format!("{user}{}", char::from(Key::Tab)))
        .await
        .expect("type");
    let focused = browser.active_element().await.expect("a focused element");
    assert_eq!(
        focused.attr("id").await.expect("id").as_deref(),
        Some("login-password"),
        "Tab goes from the user to the password"
    );
    focused
        .send_keys(&format!("{PASSWORD}{}", char::from(Key::Enter)))
        .await
        .expect("type");
    wait_text(browser, "#who-name", user).await;
}

async fn log_out(browser: &Client) {
    find(browser, "#logout")
        .await
        .click()
        .await
        .expect("log out");
    find(browser, "#login-form").await;
}

/// What the page says its client id is.
async fn client_id(browser: &Client) -> String {
    let who = find(browser, "#who-name").await.text().await.expect("text");
    who.rsplit("client ")
        .next()
        .expect("a client id")
        .trim()
        .to_owned()
}

async fn send(browser: &Client, text: &str) {
    let area = find(browser, ".composer textarea").await;
    area.send_keys(text).await.expect("type");
    area.send_keys(&char::from(Key::Enter).to_string())
        .await
        .expect("enter");
}

/// The console's main paths in one browser run (one server, one chromedriver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ConfigServer::start(&config(dir.path()), false);
    let base = format!("http://{}", server.http);
    let driver = Driver::start();
    let browser = driver.browser(&dir.path().join("profile-1")).await;

    // Logging in.
    go(&browser, &base, "").await;
    find(&browser, "#login-form").await;
    screenshot(&browser, "login").await;
    for (n, body) in ["first", "second", "third"].iter().enumerate() {
        cli(&server, "root")
            .args(["pub", "news", &format!("{body} news {n}")])
            .assert()
            .success();
    }
    let lines: String = (1..=120).map(|n| format!("line {n:03}\n")).collect();
    cli(&server, "root")
        .args(["pub", "long", "--lines", "-"])
        .write_stdin(lines)
        .assert()
        .success();
    let picture = dir.path().join("picture.svg");
    std::fs::write(
        &picture,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"120\" height=\"60\">\
         <rect width=\"120\" height=\"60\" rx=\"8\" fill=\"#0b5cad\"/>\
         <circle cx=\"30\" cy=\"30\" r=\"18\" fill=\"#f2a900\"/></svg>",
    )
    .expect("write the picture");
    log_in(&browser, &base, "alice").await;
    wait_text(&browser, "#channel-list", "news").await;
    screenshot(&browser, "channels").await;

    // History, then a message published from the CLI shows within a second.
    go(&browser, &base, "#/channel/news").await;
    wait_text(&browser, "#messages", "third news 2").await;
    find(&browser, "#messages").await;
    cli(&server, "root")
        .args(["pub", "news", "hello from the terminal #launch"])
        .assert()
        .success();
    let published = Instant::now();
    wait_text(&browser, "#messages .message", "hello from the terminal").await;
    assert!(
        published.elapsed() < Duration::from_secs(1),
        "the CLI's message took {:?} to show",
        published.elapsed()
    );

    // A message sent from the page reaches a CLI subscriber.
    // The page holds subscriptions of its own: the subscriber's is one more.
    let before = subscriptions_at(&server.http);
    let mut subscriber = spawn_subscriber(&server);
    wait_for_subscriber_at(&server.tcp, &server.http, "root", before + 1);
    send(&browser, "hello from the browser").await;
    let lines = read_lines(&mut subscriber, 1);
    assert!(
        lines
            .iter()
            .any(|line| line.contains("hello from the browser")),
        "the CLI subscriber got {lines:?}"
    );
    drop(subscriber);
    wait_text(&browser, "#messages .message", "hello from the browser").await;

    // An image is shown, with a download link.
    cli(&server, "root")
        .args(["pub", "news", "--content-type", "image/svg+xml", "--file"])
        .arg(&picture)
        .assert()
        .success();
    wait_text(&browser, "#messages a.download", "Download image/svg+xml").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let width = browser
            .execute(
                "const image = document.querySelector('#messages img.image');\
                 return image && image.complete ? image.naturalWidth : 0;",
                vec![],
            )
            .await
            .expect("run a script");
        if width.as_u64() == Some(120) {
            break;
        }
        assert!(Instant::now() < deadline, "the image never loaded: {width}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    screenshot(&browser, "channel").await;

    // A long history loads further back as the list scrolls up.
    go(&browser, &base, "#/channel/long").await;
    wait_text(&browser, "#messages .message .text", "line 120").await;
    wait_text(&browser, "#messages .message .text", "line 071").await;
    let shown = find(&browser, "#messages")
        .await
        .text()
        .await
        .expect("text");
    assert!(!shown.contains("line 070"), "only the last page at first");
    let scroll_up = "document.querySelector('.scroller').scrollTop = 0; return null;";
    browser.execute(scroll_up, vec![]).await.expect("scroll");
    wait_text(&browser, "#messages .message .text", "line 021").await;
    browser.execute(scroll_up, vec![]).await.expect("scroll");
    wait_text(&browser, "#messages .message .text", "line 001").await;
    let count = browser
        .find_all(Locator::Css("#messages .message"))
        .await
        .expect("messages")
        .len();
    assert_eq!(count, 120, "every message once, in one list");

    // A hashtag in a message is a link to follow it.
    go(&browser, &base, "#/channel/news").await;
    wait_text(&browser, "#messages a.hashtag", "#launch")
        .await
        .click()
        .await
        .expect("follow the hashtag");
    wait_text(&browser, "h1", "Following #launch").await;
    wait_text(&browser, "#messages", "hello from the terminal").await;
    screenshot(&browser, "follow").await;
    go(&browser, &base, "#/follow/*").await;
    wait_text(&browser, "h1", "Following *").await;
    wait_text(&browser, "#follow-status", "Live").await;
    cli(&server, "root")
        .args(["pub", "long", "into the wild"])
        .assert()
        .success();
    wait_text(&browser, "#messages .message", "into the wild").await;

    // A channel of 150 characters at most: the 151st is refused before sending.
    go(&browser, &base, "#/channels").await;
    type_into(&browser, "#new-channel", "short").await;
    type_into(&browser, "#new-channel-max-chars", "150").await;
    find(&browser, "#new-channel-max-chars")
        .await
        .send_keys(&char::from(Key::Enter).to_string())
        .await
        .expect("create");
    wait_text(&browser, "h1", "short").await;
    wait_text(&browser, ".counter", "0 / 150").await;
    send(&browser, &"x".repeat(151)).await;
    // Refused by the page itself: nothing reached the server.
    wait_text(&browser, "#error", "TOO_LONG").await;
    wait_text(&browser, "#error", "Nothing was sent").await;
    wait_text(&browser, ".counter.over", "151 / 150").await;
    screenshot(&browser, "too-long").await;
    let history = cli(&server, "root")
        .args(["history", "short"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(history.is_empty() || !String::from_utf8_lossy(&history).contains("xxx"));
    let area = find(&browser, ".composer textarea").await;
    area.send_keys(&char::from(Key::Backspace).to_string())
        .await
        .expect("delete one");
    area.send_keys(&char::from(Key::Enter).to_string())
        .await
        .expect("enter");
    wait_text(&browser, "#messages .message", &"x".repeat(150)).await;

    // Two browser sessions chatting in one group.
    go(&browser, &base, "#/groups").await;
    type_into(&browser, "#new-group", "team").await;
    type_into(&browser, "#new-group-description", "the team").await;
    find(&browser, "#new-group-description")
        .await
        .send_keys(&char::from(Key::Enter).to_string())
        .await
        .expect("create");
    wait_text(&browser, "#members", "alice").await;
    // Bob in a browser of his own (a second Chromium with its own profile).
    let second = driver.browser(&dir.path().join("profile-2")).await;
    log_in(&second, &base, "bob").await;
    let bob_id = client_id(&second).await;
    go(&second, &base, "#/groups").await;
    find(&second, "button[data-join=\"team\"]")
        .await
        .click()
        .await
        .expect("join");
    wait_text(&second, "#members", "bob").await;
    send(&second, "hi alice, bob here").await;
    wait_text(&browser, "#messages", "hi alice, bob here").await;
    wait_text(&browser, "#members li.online", "bob").await;
    send(&browser, "welcome bob").await;
    wait_text(&second, "#messages", "welcome bob").await;
    screenshot(&second, "group").await;

    // A direct message from alice to bob's client id lands in bob's inbox.
    go(&browser, &base, "#/direct").await;
    type_into(&browser, "#direct-to", &bob_id).await;
    send(&browser, "a word in private").await;
    wait_text(&browser, "#direct-result", "delivered").await;
    wait_text(&second, "#unread", "1").await;
    go(&second, &base, "#/direct").await;
    wait_text(&second, "#inbox", "a word in private").await;
    screenshot(&second, "direct").await;

    // A user whose role does not allow publishing sees the denial, with its code.
    log_out(&second).await;
    log_in(&second, &base, "eve").await;
    go(&second, &base, "#/channel/news").await;
    wait_text(&second, "#messages", "hello from the browser").await;
    send(&second, "may I?").await;
    wait_text(&second, "#error", "FORBIDDEN").await;
    screenshot(&second, "denied").await;

    // On a phone-width screen.
    second.set_window_size(390, 800).await.expect("resize");
    go(&second, &base, "#/channels").await;
    go(&second, &base, "#/channel/news").await;
    wait_text(&second, "#messages", "hello from the browser").await;
    screenshot(&second, "phone").await;

    // Anonymously, where the server gives such sessions a role.
    log_out(&second).await;
    type_into(&second, "#login-name", "visitor").await;
    find(&second, "#anonymous-form button")
        .await
        .click()
        .await
        .expect("connect anonymously");
    wait_text(&second, "#who-name", "visitor (anonymous)").await;
    second.close().await.expect("the second browser closes");

    // The admin's page: live charts, clients, and stop.
    log_out(&browser).await;
    log_in(&browser, &base, "root").await;
    go(&browser, &base, "#/admin").await;
    wait_text(&browser, "#admin-clients", "root").await;
    // Some traffic for the charts, over a few polls.
    for n in 0..4 {
        cli(&server, "root")
            .args(["pub", "news", &format!("traffic {n}")])
            .assert()
            .success();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait_text(&browser, "#counters", "messages_published").await;
    screenshot(&browser, "admin").await;
    find(&browser, "#reload-server")
        .await
        .click()
        .await
        .expect("reload");
    wait_text(&browser, "#admin-status", "reloaded").await;
    find(&browser, "#stop-server")
        .await
        .click()
        .await
        .expect("stop");
    browser.accept_alert().await.expect("confirm the stop");
    let mut server = server;
    let status = wait_exit(&mut server.child, Duration::from_secs(10));
    assert!(status.success(), "the server stopped: {status:?}");
    wait_text(&browser, "#error", "SHUTTING_DOWN").await;

    browser.close().await.expect("the browser closes");
    drop(driver);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the browser run took {:?}",
        started.elapsed()
    );
}

fn spawn_subscriber(server: &ConfigServer) -> KillOnDrop {
    KillOnDrop(
        StdCommand::new(support::BIN)
            .env_remove("SWITCHBOARD_SERVER")
            .env("SWITCHBOARD_USER", "root")
            .env("SWITCHBOARD_PASSWORD", PASSWORD)
            .args(["--server", &server.tcp, "sub", "news"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the CLI subscriber starts"),
    )
}

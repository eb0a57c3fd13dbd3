//! The endpoints the admin console and the developer portal read, through the real binary:
//! token usage of one's own debates per provider (both backends, providers served by the local
//! mock), the gateway's upstreams and rate limits through the engine under `aragora up`, a DR
//! drill started through the API with its progress (both backends), and the SLO history; each
//! with its refusals (no credential 401, a reader on an admin endpoint 403) and bad input.

use crate::support::mock_llm::MockLlm;
use crate::support::{
    create_key, eventually, get_json, post_json, with_bearer, Backend, Engine, EngineOptions,
    UpProcess,
};
use serde_json::{json, Value};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);
/// A drill restores, starts an engine and runs a smoke debate: give it room on a busy machine.
const DRILL_PATIENCE: Duration = Duration::from_secs(240);

/// A client of `base` sending `key`.
fn client(key: Option<&str>) -> reqwest::Client {
    with_bearer(
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(10)),
        key,
    )
    .build()
    .unwrap()
}

/// `(input, output)` tokens of `provider` in a usage list.
fn tokens(usage: &Value, provider: &str) -> (i64, i64) {
    usage
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["provider"] == provider)
        .map(|u| {
            (
                u["input_tokens"].as_i64().unwrap(),
                u["output_tokens"].as_i64().unwrap(),
            )
        })
        .unwrap_or((0, 0))
}

async fn usage_arrives_per_provider_and_is_only_the_callers(options: EngineOptions) {
    let mock = MockLlm::start().await;
    let engine = Engine::start(
        options
            .env("ANTHROPIC_API_KEY", "test-anthropic-key")
            .env("ARAGORA_ANTHROPIC_BASE_URL", mock.base_url("v1"))
            .env("OPENAI_API_KEY", "test-openai-key")
            .env("ARAGORA_OPENAI_BASE_URL", mock.base_url("v1")),
    )
    .await;
    let base = engine.url("");
    let base = base.trim_end_matches('/');
    let alice = client(Some(
        &create_key(&engine.http, base, "alice", "operator").await,
    ));
    let bob = client(Some(
        &create_key(&engine.http, base, "bob", "operator").await,
    ));

    // Alice debates with the two LLM agents (the defaults), Bob with offline ones only.
    let (status, created) = post_json(
        &alice,
        &format!("{base}/api/debates"),
        &json!({"topic": "Is usage per provider worth showing?", "rounds": 1}),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let alices = created["debate_id"].as_str().unwrap().to_string();
    let (status, created) = post_json(
        &bob,
        &format!("{base}/api/debates"),
        &json!({"topic": "Offline agents cost nothing", "rounds": 1,
                "agents": ["offline-skeptic", "offline-optimist"]}),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let bobs = created["debate_id"].as_str().unwrap().to_string();
    for id in [&alices, &bobs] {
        let debate = engine.wait_final(id, PATIENCE).await;
        assert_eq!(debate["status"], "completed", "{debate}");
    }

    // The mock answers every call with 11 input and 7 output tokens.
    let calls = |path: &str| {
        mock.requests()
            .iter()
            .filter(|r| r.path.contains(path))
            .count() as i64
    };
    let (anthropic_calls, openai_calls) = (calls("/messages"), calls("/chat/completions"));
    assert!(anthropic_calls > 0 && openai_calls > 0);
    let (status, mine) = get_json(&alice, &format!("{base}/api/auth/me/usage")).await;
    assert_eq!(status, 200, "{mine}");
    let debates = mine["debates"].as_array().unwrap();
    assert_eq!(debates.len(), 1, "only Alice's own debate: {mine}");
    assert_eq!(debates[0]["id"], alices.as_str());
    assert_eq!(debates[0]["status"], "completed");
    assert!(debates[0]["topic"].as_str().unwrap().contains("usage"));
    assert!(debates[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let usage = &debates[0]["usage"];
    assert_eq!(
        tokens(usage, "anthropic"),
        (11 * anthropic_calls, 7 * anthropic_calls),
        "{mine}"
    );
    assert_eq!(
        tokens(usage, "openai"),
        (11 * openai_calls, 7 * openai_calls),
        "{mine}"
    );
    assert_eq!(mine["totals"], *usage, "one debate: totals are its usage");

    // Bob sees his offline debate with no usage, and none of Alice's.
    let (status, his) = get_json(&bob, &format!("{base}/api/auth/me/usage?limit=5")).await;
    assert_eq!(status, 200, "{his}");
    let debates = his["debates"].as_array().unwrap();
    assert_eq!(debates.len(), 1, "{his}");
    assert_eq!(debates[0]["id"], bobs.as_str());
    assert_eq!(debates[0]["usage"], json!([]));
    assert_eq!(his["totals"], json!([]));

    // Refusals and bad input.
    let (status, body) = get_json(&client(None), &format!("{base}/api/auth/me/usage")).await;
    assert_eq!(status, 401, "{body}");
    for bad in ["0", "-1", "abc", "1000"] {
        let (status, body) =
            get_json(&alice, &format!("{base}/api/auth/me/usage?limit={bad}")).await;
        assert_eq!(status, 400, "limit={bad}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("limit"),
            "{body}"
        );
    }
}

on_both_backends!(usage_arrives_per_provider_and_is_only_the_callers);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_upstreams_and_rate_limits_come_through_the_engine_under_up() {
    // No ARAGORA_API_TOKEN: the admin key `up` makes is the only credential, and the engine
    // signs in at its gateway with a token only the process knows.
    let up = UpProcess::start(&[("ARAGORA_API_TOKEN", "")]).await;
    let key = std::fs::read_to_string(up.dir.path().join("admin.key")).unwrap();
    let admin = client(Some(key.trim()));
    let reader = client(Some(
        &create_key(&admin, &up.base, "reader", "reader").await,
    ));
    for path in ["/api/system/upstreams", "/api/v1/system/rate-limits"] {
        let url = format!("{}{path}", up.base);
        let (status, body) = get_json(&admin, &url).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(
            body["source"],
            format!("http://127.0.0.1:{}", up.admin),
            "{body}"
        );
        assert!(body["gateway"].is_object(), "{body}");
        let (status, body) = get_json(&reader, &url).await;
        assert_eq!(status, 403, "{path} as a reader: {body}");
        let (status, body) = get_json(&client(None), &url).await;
        assert_eq!(status, 401, "{path} without a credential: {body}");
    }
    // The gateway's own answer, unchanged: its one replica (this engine), ready; its limiter.
    let (_, body) = get_json(&admin, &format!("{}/api/system/upstreams", up.base)).await;
    assert_eq!(body["gateway"]["total"], 1, "{body}");
    assert_eq!(body["gateway"]["ready"], 1, "{body}");
    assert_eq!(
        body["gateway"]["upstreams"][0]["addr"],
        format!("127.0.0.1:{}", up.api),
        "{body}"
    );
    let (_, limits) = get_json(&admin, &format!("{}/api/system/rate-limits", up.base)).await;
    for field in [
        "default",
        "routes",
        "allow",
        "shared",
        "top_limited_clients",
    ] {
        assert!(limits["gateway"].get(field).is_some(), "{field}: {limits}");
    }
    assert!(
        limits["gateway"]["default"].is_null(),
        "ARAGORA_RATE_LIMIT=0 is off: {limits}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_without_its_gateway_says_what_to_set_or_what_failed() {
    let alone = Engine::start(EngineOptions::sqlite()).await;
    let (status, body) = alone.get("/api/system/upstreams").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ARAGORA_GATEWAY_ADMIN_URL"),
        "{body}"
    );
    // A gateway that is not there: 502 naming the address, never its credentials.
    let nowhere = crate::support::free_port();
    let lost = Engine::start(EngineOptions::sqlite().env(
        "ARAGORA_GATEWAY_ADMIN_URL",
        format!("http://ops:s3cret-pass@127.0.0.1:{nowhere}"),
    ))
    .await;
    let (status, body) = lost.get("/api/system/rate-limits").await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("http://127.0.0.1:{nowhere}")) && message.contains("reached"),
        "{body}"
    );
    assert!(!body.to_string().contains("s3cret-pass"), "{body}");
    // DR drills run where the DR schedules do: not on this engine.
    let (status, body) = alone.post_json("/api/drills/run", &json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ARAGORA_DR_SCHEDULER"),
        "{body}"
    );
}

/// The run of `GET /api/drills/run` once it is no longer running.
async fn finished_run(admin: &reqwest::Client, base: &str) -> Value {
    let url = format!("{base}/api/drills/run");
    eventually("the drill to finish", DRILL_PATIENCE, || async {
        let (status, body) = get_json(admin, &url).await;
        assert_eq!(status, 200, "{body}");
        (body["run"]["state"] != "running").then(|| body["run"].clone())
    })
    .await
}

async fn a_drill_started_through_the_api_reports_its_steps_and_lands_in_the_history(
    options: EngineOptions,
) {
    let mut env: Vec<(&str, String)> = vec![];
    if let Backend::Postgres(url) = &options.backend {
        env.push(("ARAGORA_DB_BACKEND", "postgres".into()));
        env.push(("DATABASE_URL", url.clone()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let up = UpProcess::start(&env).await;
    let admin = up.client.clone();
    let reader = client(Some(
        &create_key(&admin, &up.base, "reader", "reader").await,
    ));
    let url = format!("{}/api/drills/run", up.base);
    let (status, body) = get_json(&admin, &url).await;
    assert_eq!((status, &body), (200, &json!({"run": null})));
    // A debate, so the backup and the restored copy hold data.
    up.run_debate("What does a drill prove?").await;

    let (status, started) = post_json(&admin, &url, &json!({})).await;
    assert_eq!(status, 202, "{started}");
    let run = &started["run"];
    assert_eq!(run["state"], "running");
    // No backup yet: the run takes one first, and says so.
    assert_eq!(
        run["step"], "taking a backup first (there is none yet)",
        "{run}"
    );
    assert_eq!(run["steps_total"], 11, "{run}");
    assert!(run["finished_at"].is_null() && run["report"].is_null());
    let id = run["id"].as_str().unwrap().to_string();
    let (status, busy) = post_json(&admin, &url, &json!({})).await;
    assert_eq!(status, 409, "{busy}");
    assert!(
        busy["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{busy}"
    );
    assert_eq!(busy["run"]["id"], id.as_str());
    let (status, body) = post_json(&reader, &url, &json!({})).await;
    assert_eq!(status, 403, "a reader: {body}");
    let (status, body) = get_json(&client(None), &url).await;
    assert_eq!(status, 401, "{body}");

    let run = finished_run(&admin, &up.base).await;
    assert_eq!(run["state"], "passed", "{run}");
    assert_eq!(run["id"], id.as_str());
    assert_eq!(run["steps_done"], run["steps_total"]);
    assert!(
        run["error"].is_null() && run["finished_at"].is_string(),
        "{run}"
    );
    let report = &run["report"];
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["rpo_seconds"].is_number(), "{report}");
    assert!(report["rto_target_seconds"].is_number(), "{report}");
    let (_, drills) = get_json(&admin, &format!("{}/api/drills", up.base)).await;
    assert_eq!(drills["drills"][0]["id"], id.as_str(), "{drills}");
    assert_eq!(drills["drills"][0]["status"], "passed");

    // A second drill uses the backup the first took.
    let (status, again) = post_json(&admin, &url, &json!({})).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["run"]["steps_total"], 10, "{again}");
    let run = finished_run(&admin, &up.base).await;
    assert_eq!(run["state"], "passed", "{run}");
}

on_both_backends!(a_drill_started_through_the_api_reports_its_steps_and_lands_in_the_history);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slo_history_is_every_evaluation_and_refuses_what_it_cannot_answer() {
    let up = UpProcess::start(&[("ARAGORA_SLO_EVALUATION_INTERVAL", "1")]).await;
    let admin = up.client.clone();
    let reader = client(Some(
        &create_key(&admin, &up.base, "reader", "reader").await,
    ));
    up.run_debate("Is a chart worth a thousand gauges?").await;
    let url = format!("{}/api/slo/history?slo=availability&seconds=120", up.base);
    let history = eventually("two evaluations in the history", PATIENCE, || async {
        let (status, body) = get_json(&reader, &url).await;
        assert_eq!(status, 200, "{body}");
        (body["points"].as_array().unwrap().len() >= 2).then_some(body)
    })
    .await;
    assert_eq!(history["slo"], "availability");
    assert_eq!(history["source"], "live");
    let points = history["points"].as_array().unwrap();
    let last = points.last().unwrap();
    assert!(last["at"].as_str().unwrap().ends_with('Z'), "{last}");
    assert!(
        points[0]["at"].as_str() < last["at"].as_str(),
        "oldest first"
    );
    for window in ["5m", "1h", "30d"] {
        assert!(last["burn_rates"].get(window).is_some(), "{last}");
    }
    // The debate's requests went through the gateway: the SLI is a number by now.
    let sli = eventually("a point with an SLI", PATIENCE, || async {
        let (_, body) = get_json(&reader, &url).await;
        body["points"].as_array()?.last()?["sli"].as_f64()
    })
    .await;
    assert!((0.0..=1.0).contains(&sli), "{sli}");

    let cases = [
        ("?slo=nope", 404, "availability"),
        ("?slo=availability&seconds=0", 400, "seconds"),
        ("?slo=availability&seconds=86401", 400, "seconds"),
        ("?slo=availability&seconds=abc", 400, "seconds"),
        ("", 400, "?slo="),
    ];
    for (query, status, hint) in cases {
        let (got, body) = get_json(&reader, &format!("{}/api/slo/history{query}", up.base)).await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(hint),
            "{query}: {body}"
        );
    }
    let (status, body) = get_json(&client(None), &url).await;
    assert_eq!(status, 401, "{body}");
}

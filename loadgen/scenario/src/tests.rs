use super::*;

const GOOD: &str = r#"
name: demo
seed: 7
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch } }
workload:
  phases:
    - { name: warmup, duration: 2s, rate: 100/s }
    - { name: ramp, duration: 2s, rate: { from: 100/s, to: 400/s } }
    - { name: steady, duration: 3s, rate: 400/s }
  operations:
    - { name: append, weight: 8, fabric.stream.append: { stream: acme/orders/events, payload: 256B } }
    - { name: read, weight: 2, fabric.stream.read: { stream: acme/orders/events, from: latest-100 } }
"#;

fn errors(text: &str) -> Vec<Diagnostic> {
    load("s.yaml", text, &[]).expect_err("scenario should be rejected")
}

#[test]
fn a_good_scenario_loads_with_defaults() {
    let s = load("s.yaml", GOOD, &[]).unwrap();
    assert_eq!(s.seed, 7);
    assert_eq!(s.workload.phases.len(), 3);
    assert_eq!(s.workload.max_in_flight, 1024);
    assert_eq!(s.stack.runtime, Runtime::Process);
    assert_eq!(
        s.workload.phases[1].rate.unwrap(),
        RateSpec::Ramp {
            from: Rate(100.0),
            to: Rate(400.0)
        }
    );
    match &s.workload.operations[1].action {
        Action::StreamRead(r) => assert_eq!(r.from, ReadFrom::Latest(100)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn resolved_yaml_round_trips() {
    let s = load("s.yaml", GOOD, &[]).unwrap();
    let text = to_yaml(&s);
    let again = load("resolved.yaml", &text, &[]).unwrap();
    assert_eq!(s, again);
}

#[test]
fn unknown_keys_point_at_the_key_and_suggest() {
    let text = GOOD.replace(
        "{ name: warmup, duration: 2s",
        "{ name: warmup, durtion: 2s",
    );
    let errs = errors(&text);
    let first = &errs[0];
    assert_eq!(first.location(), "s.yaml:9:23", "{first}");
    assert!(first.message.contains("unknown key `durtion`"), "{first}");
    assert_eq!(first.hint.as_deref(), Some("did you mean `duration`?"));
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let text = GOOD
        .replace("rate: 100/s }", "rate: 100 }")
        .replace("payload: 256B", "payload: 256kb")
        .replace("seed: 7", "seed: 7\nsead: 8");
    let errs = errors(&text);
    let rendered: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 3, "{rendered:#?}");
    assert!(
        rendered
            .iter()
            .any(|e| e.starts_with("s.yaml:4:1:") && e.contains("did you mean `seed`"))
    );
    assert!(
        rendered
            .iter()
            .any(|e| e.contains("rate `100` has no unit") && e.contains("100/s"))
    );
    assert!(
        rendered
            .iter()
            .any(|e| e.contains("`kb` is not a size unit"))
    );
}

#[test]
fn unknown_operation_action_suggests_the_catalog_key() {
    let text = GOOD.replace("fabric.stream.append:", "fabric.stream.apend:");
    let errs = errors(&text);
    assert!(
        errs[0]
            .message
            .contains("unknown key `fabric.stream.apend`"),
        "{}",
        errs[0]
    );
    assert_eq!(
        errs[0].hint.as_deref(),
        Some("did you mean `fabric.stream.append`?")
    );
    assert_eq!(errs[0].location(), "s.yaml:13:34");
}

#[test]
fn semantic_errors_have_positions() {
    let text = GOOD.replace("name: ramp", "name: warmup").replace(
        "name: read, weight: 2, fabric.stream.read: { stream:",
        "name: read, weight: 2, fabric.stream.read: { service: fabrik, stream:",
    );
    let errs = errors(&text);
    let rendered: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{rendered:#?}");
    assert!(
        rendered[0].starts_with("s.yaml:10:15:") && rendered[0].contains("used twice"),
        "{rendered:#?}"
    );
    assert!(
        rendered[1].contains("no service `fabrik`")
            && rendered[1].contains("did you mean `fabric`"),
        "{rendered:#?}"
    );
}

#[test]
fn syntax_errors_and_wrong_shapes_are_located() {
    let errs = errors("name: x\nstack: [\n");
    assert!(matches!(errs[0].pos, tree::Pos::At { .. }));
    let errs = errors("- just\n- a list\n");
    assert!(errs[0].message.contains("mapping"));
    let errs = errors("name: x\n");
    assert!(
        errs[0].message.contains("missing key `stack`"),
        "{}",
        errs[0]
    );
}

#[test]
fn overrides_apply_and_their_errors_name_the_override() {
    let s = load(
        "s.yaml",
        GOOD,
        &["workload.phases.steady.rate=900/s".into(), "seed=9".into()],
    )
    .unwrap();
    assert_eq!(
        s.workload.phases[2].rate,
        Some(RateSpec::Constant(Rate(900.0)))
    );
    assert_eq!(s.seed, 9);
    let errs = load("s.yaml", GOOD, &["workload.phases.steady.rate=900".into()]).unwrap_err();
    assert_eq!(errs[0].location(), "--set workload.phases.steady.rate=900");
    assert!(
        errs[0]
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("900/s")
    );
}

#[test]
fn unsupported_modes_are_refused_clearly() {
    let text = GOOD.replace("stack:\n", "stack:\n  runtime: containers\n");
    let errs = errors(&text);
    assert!(errs[0].message.contains("containers"), "{}", errs[0]);
}

#[test]
fn schema_is_generated_from_the_types() {
    let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    assert_eq!(schema["title"], "Gauntlet scenario (format v1)");
    assert_eq!(schema["additionalProperties"], false);
    let defs = schema["$defs"].as_object().unwrap();
    for def in [
        "Phase",
        "Operation",
        "StreamAppend",
        "Duration",
        "Rate",
        "Size",
    ] {
        assert!(defs.contains_key(def), "missing {def}");
    }
}

#[test]
fn the_committed_schema_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == json_schema(),
        "scenarios/schema.json is out of date with the scenario types; regenerate it with\n  cargo run --bin loadgen -- schema > scenarios/schema.json"
    );
}

#[test]
fn every_bundled_scenario_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut stack = vec![dir];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                seen += 1;
                if let Err(errs) = load_file(&path, &[]) {
                    panic!(
                        "{}: {}",
                        path.display(),
                        errs.iter().map(|e| e.to_string()).collect::<String>()
                    );
                }
            }
        }
    }
    assert!(seen >= 1);
}

#[test]
fn slo_and_gate_sections_load_and_check_names() {
    let text = format!(
        "{GOOD}slo:\n  append: {{ p99: 5ms, throughput: \">= 300/s\", errors: \"< 0.1%\" }}\ngate:\n  phases: [steady]\n  operations:\n    read: {{ p99: 20% }}\n"
    );
    let s = load("s.yaml", &text, &[]).unwrap();
    assert_eq!(s.slo["append"].p99, Some(Duration::from_millis(5)));
    assert_eq!(s.slo["append"].throughput.unwrap().0.0, 300.0);
    let gate = s.gate.unwrap();
    assert_eq!(gate.tolerances("read").p99, Some(Percent(20.0)));
    assert_eq!(gate.tolerances("append").p99, Some(Percent(10.0)));

    let bad = text
        .replace("slo:\n  append:", "slo:\n  apend:")
        .replace("phases: [steady]", "phases: [stedy]");
    let errs = errors(&bad);
    let rendered: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{rendered:#?}");
    assert!(
        rendered[0].contains("no operation `apend`")
            && rendered[0].contains("did you mean `append`"),
        "{rendered:#?}"
    );
    assert!(rendered[1].contains("no phase `stedy`"), "{rendered:#?}");
}

#[test]
fn profiles_load_strictly() {
    let p = load_profile(
        "p.yaml",
        "description: x\nslo:\n  routing: { p99: 100us }\ngate:\n  default: { p99: 5% }\n",
    )
    .unwrap();
    assert_eq!(
        p.slo["routing"].p99,
        Some(Duration(std::time::Duration::from_micros(100)))
    );
    let errs = load_profile("p.yaml", "slo:\n  routing: { p98: 1ms }\n").unwrap_err();
    assert!(errs[0].message.contains("unknown key `p98`"), "{}", errs[0]);
}

#[test]
fn env_values_may_be_numbers_or_booleans() {
    let s = load(
        "s.yaml",
        GOOD,
        &[
            "stack.services.fabric.env.DELAY=3000".into(),
            "stack.services.fabric.env.FLAG=true".into(),
        ],
    )
    .unwrap();
    let env = &s.stack.services["fabric"].env;
    assert_eq!(env["DELAY"], "3000");
    assert_eq!(env["FLAG"], "true");
}

const CLOSED: &str = r#"
name: closed
stack:
  services:
    fabric: { kind: fabric }
workload:
  engine: closed
  think_time: 10ms
  phases:
    - { name: rampup, duration: 2s, users: { from: 0, to: 8 } }
    - { name: steady, duration: 3s, users: 8 }
  operations:
    - { name: append, fabric.stream.append: { stream: acme/orders/events } }
"#;

#[test]
fn a_closed_scenario_gives_users_per_phase() {
    let s = load("s.yaml", CLOSED, &[]).unwrap();
    assert_eq!(s.workload.engine, EngineKind::Closed);
    assert_eq!(
        s.workload.phases[0].users,
        Some(UsersSpec::Ramp { from: 0, to: 8 })
    );
    assert_eq!(s.workload.phases[1].users, Some(UsersSpec::Constant(8)));
    assert_eq!(s.workload.phases[1].rate, None);
    let again = load("resolved.yaml", &to_yaml(&s), &[]).unwrap();
    assert_eq!(s, again);
}

#[test]
fn rates_and_users_belong_to_their_model() {
    // A rate in a closed-model phase.
    let errs = errors(&CLOSED.replace("users: 8 }", "rate: 100/s }"));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("closed model runs users")
                && e.location().starts_with("s.yaml:")),
        "{errs:?}"
    );
    // Users in an open-model phase.
    let open = CLOSED.replace("  engine: closed\n  think_time: 10ms\n", "");
    let errs = errors(&open);
    assert!(
        errs.iter()
            .any(|e| e.message.contains("open model does not use")),
        "{errs:?}"
    );
    // Think time without the closed model.
    let errs = errors(&CLOSED.replace("  engine: closed\n", ""));
    assert!(
        errs.iter().any(|e| e.message.contains("`think_time`")),
        "{errs:?}"
    );
    // No users at all, and a user count that is not a number.
    let errs = errors(&CLOSED.replace("users: 8 }", "users: 0 }"));
    assert!(
        errs.iter().any(|e| e.message.contains("has no users")),
        "{errs:?}"
    );
    let errs = errors(&CLOSED.replace("users: 8 }", "users: 8/s }"));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("not a number of users")),
        "{errs:?}"
    );
}

const EXTERNAL: &str = r#"
name: external
stack:
  external: { nginx: "http://127.0.0.1:8080" }
workload:
  phases:
    - { name: steady, duration: 1s, rate: 100/s }
  operations:
    - { name: index, http: { service: nginx, method: GET, url: /, expect: 200 } }
"#;

#[test]
fn an_external_service_takes_http_operations() {
    let s = load("s.yaml", EXTERNAL, &[]).unwrap();
    assert_eq!(s.stack.external["nginx"], "http://127.0.0.1:8080");
    assert!(s.stack.services.is_empty());
    match &s.workload.operations[0].action {
        Action::Http(h) => {
            assert_eq!(
                (h.method.as_str(), h.url.as_str(), h.expect),
                ("GET", "/", 200)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        target_service(&s, &s.workload.operations[0].action),
        Some("nginx")
    );
    let again = load("resolved.yaml", &to_yaml(&s), &[]).unwrap();
    assert_eq!(s, again);
}

#[test]
fn bad_http_operations_and_external_urls_are_refused() {
    let errs = errors(&EXTERNAL.replace("service: nginx", "service: ngnix"));
    assert!(
        errs.iter().any(|e| e.message.contains("no service `ngnix`")
            && e.hint.as_deref().is_some_and(|h| h.contains("nginx"))),
        "{errs:?}"
    );
    let errs = errors(&EXTERNAL.replace("url: /", "url: index.html"));
    assert!(
        errs.iter().any(|e| e.message.contains("not a path")),
        "{errs:?}"
    );
    let errs = errors(&EXTERNAL.replace("method: GET", "method: FETCH"));
    assert!(
        errs.iter().any(|e| e.message.contains("`FETCH`")),
        "{errs:?}"
    );
    let errs = errors(&EXTERNAL.replace("expect: 200", "expect: 42"));
    assert!(
        errs.iter().any(|e| e.message.contains("`expect` 42")),
        "{errs:?}"
    );
    let errs = errors(&EXTERNAL.replace("http://127.0.0.1:8080", "127.0.0.1:8080/x"));
    assert!(
        errs.iter().any(|e| e.message.contains("not a base URL")),
        "{errs:?}"
    );
}

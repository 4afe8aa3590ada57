//! The OpenAPI document kept true: every route of the API's router is described, every
//! path it describes answers (neither the JSON 404 of an unknown path nor a 405), and
//! its examples and the real answers fit its schemas.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::{EventStream, Request, get, hub_with_web};
use switchboard_client::ErrorCode;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The (path, method) pairs routed in the API's modules: every `.route("...", ...)`
/// and the method routers named in it.
fn routed() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (_, rest) in source
            .match_indices(".route(")
            .map(|(at, _)| source.split_at(at + 7))
        {
            let path = rest.split('"').nth(1).unwrap().to_owned();
            // The route's arguments, to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(at, _)| at)
                .unwrap();
            let arguments = &rest[..end];
            for method in METHODS {
                let called = arguments.contains(&format!("{method}("))
                    && !arguments.contains(&format!("_{method}("));
                if called {
                    routes.insert((path.clone(), method.to_owned()));
                }
            }
        }
    }
    routes
}

fn described(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert((path.clone(), method.clone()));
        }
    }
    operations
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(document, document.pointer(pointer).unwrap())
        }
        None => schema,
    }
}

/// Whether `value` fits `schema` (the subset of JSON Schema the document uses):
/// types, required properties, no property the schema does not name.
fn check(document: &Value, value: &Value, schema: &Value, at: &str) {
    let schema = resolve(document, schema);
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => return,
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_u64() || number.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    assert!(
        types.contains(&kind),
        "{at}: a {kind}, not {types:?}: {value}"
    );
    match value {
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                check(document, item, &schema["items"], &format!("{at}[{index}]"));
            }
        }
        Value::Object(fields) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                assert!(fields.contains_key(required), "{at}: {required} is missing");
            }
            let properties = schema["properties"].as_object();
            for (key, field) in fields {
                match properties.and_then(|properties| properties.get(key)) {
                    Some(property) => check(document, field, property, &format!("{at}.{key}")),
                    None => assert!(
                        schema.get("additionalProperties").is_some()
                            && schema["additionalProperties"] != json!(false),
                        "{at}: {key} is not in the schema"
                    ),
                }
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_every_path_answers() {
    let (server, web) = hub_with_web(|config| config.admin_token = Some("admin".into())).await;
    let addr = web.local_addr();
    let served = get(addr, "/api/v1/openapi.json").await;
    assert_eq!(served.status, 200);
    let document = served.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));

    let routes = routed();
    assert!(routes.len() > 20, "the routes were found: {routes:?}");
    let operations = described(&document);
    let undescribed: Vec<_> = routes.difference(&operations).collect();
    assert!(
        undescribed.is_empty(),
        "routes missing from openapi.json: {undescribed:?}"
    );
    let unrouted: Vec<_> = operations.difference(&routes).collect();
    assert!(
        unrouted.is_empty(),
        "openapi.json describes unrouted: {unrouted:?}"
    );

    // Something to find: a message with a hashtag, a group the caller belongs to.
    let ack = Request::new("POST", "/api/v1/channels/news/messages")
        .header("Content-Type", "text/plain")
        .body("hello #rust")
        .send(addr)
        .await
        .json();
    let id = ack["id"].as_str().unwrap().to_owned();
    Request::new("POST", "/api/v1/groups")
        .json(json!({"name": "team"}))
        .send(addr)
        .await;
    Request::new("POST", "/api/v1/groups/team/join")
        .send(addr)
        .await;

    // What undoes the setup comes after what uses it, and stop last: it ends the server.
    let mut ordered: Vec<_> = operations.iter().collect();
    ordered.sort_by_key(|(path, method)| {
        (
            path.ends_with("/stop"),
            method == "delete",
            path.ends_with("/leave"),
        )
    });
    for (path, method) in ordered {
        let operation = &document["paths"][path][method];
        let concrete = path
            .replace("/channels/{name}", "/channels/news")
            .replace("/groups/{name}", "/groups/team")
            .replace("{id}", &id)
            .replace("{tag}", "rust");
        let what = format!("{} {path}", method.to_uppercase());
        if path == "/api/v1/events" {
            let stream = EventStream::open(addr, "/api/v1/events?pattern=news", &[]).await;
            assert_eq!(stream.status, 200, "{what}");
            continue;
        }
        let mut request =
            Request::new(Box::leak(method.to_uppercase().into_boxed_str()), &concrete)
                .bearer("admin");
        let json_body = &operation["requestBody"]["content"]["application/json"]["example"];
        if !json_body.is_null() {
            let mut body = json_body.clone();
            // A new name, so that a create succeeds rather than conflicts.
            body["name"] = json!(format!("fresh-{}", body["name"].as_str().unwrap()));
            request = request.json(body);
        } else if method == "post" {
            request = request.header("Content-Type", "text/plain").body("example");
        }
        let reply = request.send(addr).await;
        assert_ne!(reply.status, 405, "{what}: {}", reply.text());
        let unknown = reply.status == 404 && reply.text().contains("no such path");
        assert!(!unknown, "{what} is not routed");
        assert!(
            operation["responses"][reply.status.to_string()].is_object(),
            "{what} answered {}, which it does not describe: {}",
            reply.status,
            reply.text()
        );
        if (200..300).contains(&reply.status) {
            let content = &operation["responses"][reply.status.to_string()]["content"];
            let described = &content["application/json"];
            if described.is_object() && reply.header("content-type") == Some("application/json") {
                check(
                    &document,
                    &described["example"],
                    &described["schema"],
                    &format!("{what} example"),
                );
                check(&document, &reply.json(), &described["schema"], &what);
            }
        }
    }

    // Every error example is an error of the protocol, code and number alike.
    for (name, response) in document["components"]["responses"].as_object().unwrap() {
        let example = &response["content"]["application/json"]["example"];
        let error_schema = json!({"$ref": "#/components/schemas/Error"});
        check(&document, example, &error_schema, name);
        let number = u16::try_from(example["error"]["number"].as_u64().unwrap()).unwrap();
        assert_eq!(
            ErrorCode::from_u16(number).to_string(),
            example["error"]["code"].as_str().unwrap(),
            "{name}"
        );
    }
    drop(server);
}

//! A mocked Kubernetes API for controller scenarios (as kube-rs's reference controller tests):
//! the scenario answers each request the reconcile makes, in order, as the API server would.

#![allow(dead_code)]

use std::sync::Arc;

use ferry::controller::Context;
use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::Value;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The API server side of a scenario: answers requests in order and records Events apart.
pub struct ApiServer {
    handle: Handle,
    /// Events recorded so far.
    pub events: Vec<Value>,
    /// Requests left unanswered on purpose.
    hung: Vec<tower_test::mock::SendResponse<Response<Body>>>,
    /// Answer the calls for a job's worker identity (ServiceAccount, Role, RoleBinding) as in a
    /// namespace without them — a GET is 404, a POST creates — instead of expecting them; on
    /// unless a scenario is about them ([`ApiServer::explicit_identity`]).
    auto_identity: bool,
    /// The worker identity objects created so far under `auto_identity`.
    pub identity: Vec<Value>,
}

fn is_identity(path: &str) -> bool {
    path.contains("/serviceaccounts") || path.contains("/roles") || path.contains("/rolebindings")
}

/// One expected call: method, path (without the query), and the answer's body.
pub struct Call {
    method: Method,
    path: String,
    status: u16,
    answer: Value,
}

/// A call answered with 200 and `answer`.
pub fn call(method: Method, path: &str, answer: Value) -> Call {
    Call { method, path: path.to_owned(), status: 200, answer }
}

/// A call answered with its own request body (what a create returns).
pub fn echo(method: Method, path: &str) -> Call {
    Call { method, path: path.to_owned(), status: 200, answer: Value::Null }
}

/// A call refused with `code` and a Kubernetes `Status` saying `reason`.
pub fn refused(method: Method, path: &str, code: u16, reason: &str) -> Call {
    let answer = serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason,
        "message": format!("{reason} (mocked)"), "metadata": {}
    });
    Call { method, path: path.to_owned(), status: code, answer }
}

/// A call refused with `code`, `reason` and the API server's own `message`.
pub fn refused_with(method: Method, path: &str, code: u16, reason: &str, message: &str) -> Call {
    let answer = serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason,
        "message": message, "metadata": {}
    });
    Call { method, path: path.to_owned(), status: code, answer }
}

impl ApiServer {
    /// Takes the next request and never answers it (a call that hangs); returns its method and
    /// path. The unanswered request is kept open until the server is dropped.
    pub async fn hang(&mut self) -> (Method, String) {
        let (request, send) = self.handle.next_request().await.expect("another call");
        let out = (request.method().clone(), request.uri().path().to_owned());
        self.hung.push(send);
        out
    }

    /// Answers the next request, which must be `expected`; returns its query and body.
    pub async fn expect(&mut self, expected: Call) -> (String, Value) {
        loop {
            let (request, send) = self.handle.next_request().await.expect("the reconcile makes another call");
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or("").to_owned();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            if path.contains("/events") {
                send.send_response(Response::builder().body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap());
                self.events.push(body);
                continue;
            }
            if self.auto_identity && is_identity(&path) {
                self.answer_identity(&method, &path, body, send);
                continue;
            }
            assert_eq!(
                (&method, path.as_str()),
                (&expected.method, expected.path.as_str()),
                "query {query}, body {body}"
            );
            send.send_response(
                Response::builder()
                    .status(expected.status)
                    .body(Body::from(
                        serde_json::to_vec(if expected.answer.is_null() { &body } else { &expected.answer }).unwrap(),
                    ))
                    .unwrap(),
            );
            return (query, body);
        }
    }

    /// Expect the worker identity calls like any other from now on.
    pub fn explicit_identity(&mut self) {
        self.auto_identity = false;
    }

    fn answer_identity(
        &mut self,
        method: &Method,
        path: &str,
        body: Value,
        send: tower_test::mock::SendResponse<Response<Body>>,
    ) {
        let (status, answer) = if *method == Method::GET {
            let missing = serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404,
                "reason": "NotFound", "message": format!("{path} not found (mocked)"), "metadata": {}});
            (404, missing)
        } else {
            assert_eq!(*method, Method::POST, "{path}");
            self.identity.push(body.clone());
            (201, body)
        };
        send.send_response(
            Response::builder().status(status).body(Body::from(serde_json::to_vec(&answer).unwrap())).unwrap(),
        );
    }

    /// No more calls, except Events (and worker identity calls, unless explicit).
    pub async fn done(mut self) -> Vec<Value> {
        while let Ok(Some((request, send))) =
            tokio::time::timeout(std::time::Duration::from_millis(200), self.handle.next_request()).await
        {
            let path = request.uri().path().to_owned();
            let method = request.method().clone();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            if self.auto_identity && is_identity(&path) {
                let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
                self.answer_identity(&method, &path, body, send);
                continue;
            }
            assert!(path.contains("/events"), "unexpected call {method} {path}");
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            send.send_response(Response::builder().body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap());
            self.events.push(body);
        }
        self.events
    }
}

pub fn context() -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let recorder = Recorder::new(client.clone(), Reporter { controller: "ferry-operator".into(), instance: None });
    (
        Arc::new(Context { client, policy: ferry::controller::policy::WorkerPolicy::new("ferry:test"), recorder }),
        ApiServer { handle, events: Vec::new(), hung: Vec::new(), auto_identity: true, identity: Vec::new() },
    )
}

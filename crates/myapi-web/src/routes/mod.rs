//! One module per service, each mounting its own scope. Every route goes through
//! [`ApiScope`], which answers other methods with 405 and `Allow`, and records each
//! operation so a test can check the OpenAPI document lists exactly what is mounted.
//!
//! To add a service: add a module here with a `configure(&mut Vec<ApiScope>)`, call it from
//! [`scopes`], and list its handlers in [`crate::openapi::ApiDoc`].

pub mod auth;
pub mod health;
pub mod movies;
// [xtask] route modules

use std::collections::BTreeMap;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{FromRequest, Handler, HttpResponse, Responder, Route, web};

use crate::error::{PROBLEM_JSON, problem_json};

/// Every service's scope, in mounting order.
pub fn scopes() -> Vec<ApiScope> {
    let mut scopes = Vec::new();
    health::configure(&mut scopes);
    auth::configure(&mut scopes);
    movies::configure(&mut scopes);
    // [xtask] route scopes
    scopes
}

/// Mounts every API route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for scope in scopes() {
        scope.mount(cfg);
    }
}

/// Every mounted operation as `(METHOD, path)`, with paths written as in OpenAPI.
pub fn operations() -> Vec<(Method, String)> {
    scopes().iter().flat_map(ApiScope::operations).collect()
}

/// The routes of one service under a path prefix (`""` for root-level routes).
pub struct ApiScope {
    prefix: &'static str,
    resources: BTreeMap<&'static str, Vec<(Method, Route)>>,
}

impl ApiScope {
    /// An empty scope at `prefix`.
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            resources: BTreeMap::new(),
        }
    }

    /// Adds `method path` (relative to the prefix) served by `handler`.
    pub fn route<F, Args>(mut self, method: Method, path: &'static str, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let route = web::method(method.clone()).to(handler);
        self.resources
            .entry(path)
            .or_default()
            .push((method, route));
        self
    }

    /// `(METHOD, full path)` of each route.
    pub fn operations(&self) -> Vec<(Method, String)> {
        self.resources
            .iter()
            .flat_map(|(path, routes)| {
                routes
                    .iter()
                    .map(move |(method, _)| (method.clone(), format!("{}{path}", self.prefix)))
            })
            .collect()
    }

    /// Registers the scope; each resource answers unknown methods with 405 and `Allow`.
    pub fn mount(self, cfg: &mut web::ServiceConfig) {
        let resources = self.resources.into_iter().map(|(path, routes)| {
            let allow = routes
                .iter()
                .map(|(m, _)| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            routes
                .into_iter()
                .fold(web::resource(path), |resource, (_, route)| {
                    resource.route(route)
                })
                .default_service(web::to(move || method_not_allowed(allow.clone())))
        });
        if self.prefix.is_empty() {
            resources.for_each(|resource| {
                cfg.service(resource);
            });
        } else {
            cfg.service(resources.fold(web::scope(self.prefix), actix_web::Scope::service));
        }
    }
}

async fn method_not_allowed(allow: String) -> HttpResponse {
    let status = StatusCode::METHOD_NOT_ALLOWED;
    HttpResponse::build(status)
        .insert_header((header::ALLOW, allow.clone()))
        .content_type(PROBLEM_JSON)
        .body(problem_json(
            status,
            format!("allowed methods: {allow}"),
            None,
            Vec::new(),
        ))
}

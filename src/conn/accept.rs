//! The decisions on a connection's HTTP request, before any WebSocket frame:
//! which route it asks for ([`HttpRoute`] for the plain routes the worker
//! answers, the echo and pub/sub upgrades, the publish API), whether its
//! Origin and credentials are accepted, and the publish API's body. Writes
//! the 101 (marked as the stream's preamble) or a complete refusal into the
//! cork. Must not touch sockets or frames.

use super::compress::Pmd;
use super::CloseCause;
use super::{AppEvent, Conn, Env, Route, Settings, State};
use crate::deflate;
use crate::handshake::{self, Reject, Request};
use crate::pubsub::protocol as proto;
use crate::web;

/// Plain HTTP routes answered by the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpRoute {
    /// `GET /metrics`
    Metrics,
    /// `GET /healthz`
    Health,
    /// `GET /readyz`
    Ready,
}

impl HttpRoute {
    fn from_path(path: &str) -> Option<HttpRoute> {
        match path {
            "/metrics" => Some(HttpRoute::Metrics),
            "/healthz" => Some(HttpRoute::Health),
            "/readyz" => Some(HttpRoute::Ready),
            _ => None,
        }
    }
}

impl Conn {
    pub(super) fn handshake_input(&mut self, data: &[u8], env: &mut Env) {
        self.inbuf.extend_from_slice(data);
        let s = env.settings;
        let req = match handshake::parse_request(&self.inbuf, &s.limits) {
            Ok(None) => return,
            Ok(Some(req)) => req,
            Err(reject) => return self.refuse(&reject, env),
        };
        if let Some(route) = HttpRoute::from_path(&req.path) {
            if (self.admin_only || s.admin_on_main) && req.method == "GET" {
                env.events.push(AppEvent::Http(route));
                self.linger(CloseCause::HttpServed, env).awaiting_app = true;
                return;
            }
        }
        let admin_routes = self.admin_only || s.admin_on_main;
        if req.method == "GET" {
            let demo = s.demo && !self.admin_only;
            if let Some(asset) = web::find(&req.path, demo, admin_routes) {
                return self.serve_asset(asset, env);
            }
        }
        let path = Some(&req.path);
        let route = if admin_routes && req.path == web::DASHBOARD_WS {
            Route::Dashboard
        } else if self.admin_only {
            return self.refuse(&Reject::new(404, "no such route"), env);
        } else if path == s.echo_path.as_ref() {
            Route::Echo
        } else if path == s.pubsub_path.as_ref() {
            Route::PubSub
        } else if path == s.publish_api_path.as_ref() {
            return self.http_publish(&req, env);
        } else {
            return self.refuse(&Reject::new(404, "no such route"), env);
        };
        let upgrade = match handshake::validate_upgrade(&req, &s.subprotocols) {
            Ok(up) => up,
            Err(reject) => return self.refuse(&reject, env),
        };
        if let Err(reject) = check_origin(&req, s) {
            return self.refuse_auth(&reject, env);
        }
        match s.auth.authenticate(&req, &req.path, env.now_unix) {
            Ok(identity) if route == Route::Dashboard && !identity.can_admin() => {
                let reject = Reject::new(403, "the dashboard needs an API key with admin = true");
                return self.refuse_auth(&reject, env);
            }
            Ok(identity) => self.identity = Some(identity),
            Err(e) => return self.refuse_auth(&unauthorized(&e), env),
        }
        let extensions = match self.negotiate_deflate(&req, env) {
            Ok(e) => e,
            Err(reject) => return self.refuse(&reject, env),
        };
        handshake::write_upgrade_response_with(&upgrade, extensions.as_deref(), env.cork.buf_mut());
        // Whatever a slow-consumer policy later discards, and however the
        // kernel splits the writes, the 101 reaches the client before any
        // frame.
        env.cork.mark_preamble();
        env.stats.upgraded += 1;
        self.route = Some(route);
        self.state = State::Open { last_ping: env.now };
        self.last_msg = env.now;
        if route != Route::Echo {
            env.events.push(AppEvent::Opened(route));
        }
        // Bytes after the request head already belong to the WebSocket stream.
        let mut rest = std::mem::take(&mut self.inbuf);
        rest.drain(..req.head_len);
        if !rest.is_empty() {
            self.ws_input(&rest, env);
        }
    }

    /// `POST` to the publish API: wait for the whole body, validate it, answer.
    fn http_publish(&mut self, req: &Request, env: &mut Env) {
        if req.method != "POST" {
            let reject = Reject::new(405, "use POST").with_header("Allow", "POST");
            return self.refuse(&reject, env);
        }
        match env.settings.auth.authenticate(req, &req.path, env.now_unix) {
            Ok(identity) if identity.can_use_publish_api() => {}
            Ok(_) => {
                return self.refuse_auth(&Reject::new(403, "this credential may not publish"), env)
            }
            Err(e) => return self.refuse_auth(&unauthorized(&e), env),
        }
        let max_body = env.settings.max_data_bytes + 1024;
        let Some(len) = req.header("content-length") else {
            return self.refuse(&Reject::new(411, "Content-Length required"), env);
        };
        let Some(len) = std::str::from_utf8(len).ok().and_then(|v| v.trim().parse::<usize>().ok())
        else {
            return self.refuse(&Reject::new(400, "bad Content-Length"), env);
        };
        if len > max_body {
            return self.refuse(&Reject::new(413, "body too large"), env);
        }
        if self.inbuf.len() < req.head_len + len {
            return; // the body is still arriving, under the handshake deadline
        }
        let body = &self.inbuf[req.head_len..req.head_len + len];
        let response = match proto::parse_http_publish(body, env.settings.max_data_bytes) {
            Ok(publish) => {
                let body = format!("{{\"status\":\"accepted\",\"room\":\"{}\"}}\n", publish.room);
                env.events.push(AppEvent::HttpPublish(publish));
                handshake::http_response(202, "application/json", body.as_bytes(), &[])
            }
            Err((status, reason)) => {
                env.stats.count_refusal(status);
                let body = format!("{reason}\n");
                handshake::http_response(status, "text/plain; charset=utf-8", body.as_bytes(), &[])
            }
        };
        env.cork.extend(&response);
        self.linger(CloseCause::HttpServed, env);
    }

    /// Refused by Origin, authentication or per-IP limits (counted apart
    /// from malformed requests).
    pub fn refuse_auth(&mut self, reject: &Reject, env: &mut Env) {
        self.close_reason = Some(CloseCause::AuthRefused);
        self.refuse(reject, env);
    }

    /// Who the client authenticated as, once upgraded.
    pub fn identity(&self) -> Option<&crate::auth::Identity> {
        self.identity.as_ref()
    }

    /// A plain-text client on a TLS port: answer in plain text and close.
    pub fn refuse_plain_on_tls(&mut self, env: &mut Env) {
        self.refuse(&Reject::new(400, "this port speaks TLS: use wss:// or https://"), env);
    }

    /// permessage-deflate (when enabled): the agreed response value, if
    /// an offer was accepted; 400 for a header that is not valid syntax.
    fn negotiate_deflate(&mut self, req: &Request, env: &Env) -> Result<Option<String>, Reject> {
        let Some(ds) = &env.settings.deflate else { return Ok(None) };
        let values = req.header_values("sec-websocket-extensions");
        if values.is_empty() {
            return Ok(None);
        }
        let offers = deflate::parse(&values)
            .map_err(|_| Reject::new(400, "malformed Sec-WebSocket-Extensions"))?;
        let policy = deflate::Policy {
            client_max_window_bits: ds.client_max_window_bits,
            allow_context_takeover: ds.takeover.available(),
        };
        let Some((agreed, bits)) = deflate::agree(&offers, policy) else { return Ok(None) };
        let guard = if agreed.keeps_context() {
            match ds.takeover.take() {
                Some(g) => Some(g),
                None => return Ok(None), // the budget ran out meanwhile: decline
            }
        } else {
            None
        };
        self.pmd = Some(Box::new(Pmd::new(agreed, guard)));
        Ok(Some(agreed.response(bits)))
    }

    /// An embedded page or script (`crate::web`), then close.
    fn serve_asset(&mut self, asset: &web::Asset, env: &mut Env) {
        let headers = web::headers();
        let response = if asset.path == "/" {
            // The chat page learns the pub/sub path from the server.
            let ws = env.settings.pubsub_path.as_deref().unwrap_or("");
            let page = String::from_utf8_lossy(asset.body).replace("{{WS_PATH}}", ws);
            handshake::http_response(200, asset.content_type, page.as_bytes(), &headers)
        } else {
            handshake::http_response(200, asset.content_type, asset.body, &headers)
        };
        env.cork.extend(&response);
        self.linger(CloseCause::HttpServed, env);
    }

    fn refuse(&mut self, reject: &Reject, env: &mut Env) {
        env.stats.count_refusal(reject.status);
        env.cork.extend(&reject.to_response());
        self.linger(CloseCause::HandshakeRefused, env);
    }
}

/// The 401 refusal for a failed authentication.
fn unauthorized(e: &crate::auth::AuthError) -> Reject {
    Reject::new(401, e.reason).with_header("WWW-Authenticate", e.www_authenticate())
}

/// Origin check against the allow-list (cross-site WebSocket hijacking).
fn check_origin(req: &Request, s: &Settings) -> Result<(), Reject> {
    match req.header("origin") {
        None if s.allow_missing_origin => Ok(()),
        None => Err(Reject::new(403, "Origin header required")),
        Some(origin) => match &s.allowed_origins {
            None => Ok(()),
            Some(list) if list.iter().any(|o| o.as_bytes() == origin) => Ok(()),
            Some(_) => Err(Reject::new(403, "origin not allowed")),
        },
    }
}

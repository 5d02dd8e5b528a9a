//! The HTTP side: routes, CORS, the homeserver check and the SFU call.

use std::time::{SystemTime, UNIX_EPOCH};

use wstd::http::{Body, Client, Error, Method, Request, Response, StatusCode};

use crate::request::{self, GetToken, SfuGet};
use crate::token::{self, Grant};

/// An answer with an error code, as the reference service writes it.
struct Refused {
    status: StatusCode,
    errcode: &'static str,
    error: String,
}

/// One token request, either shape.
struct Ask {
    openid: request::OpenIdToken,
    room: String,
    slot: String,
    who: Who,
}

/// Whose token: a device (`/sfu/get`) or a MatrixRTC membership.
enum Who {
    Device(String),
    Member(request::Member),
}

/// The settings, from the environment.
struct Settings {
    url: String,
    key: String,
    secret: String,
    full_access: String,
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let response = match path.as_str() {
        "/healthz" => match method {
            Method::GET | Method::HEAD => plain(StatusCode::OK),
            _ => plain(StatusCode::METHOD_NOT_ALLOWED),
        },
        "/sfu/get" | "/get_token" => {
            let answer = match method {
                Method::OPTIONS => plain(StatusCode::OK),
                Method::POST => {
                    let body = request.body_mut().contents().await?.to_vec();
                    match token_for(&path, &body).await {
                        Ok(json) => json_response(StatusCode::OK, json),
                        Err(refused) => refusal(refused),
                    }
                }
                _ => plain(StatusCode::METHOD_NOT_ALLOWED),
            };
            with_cors(answer)
        }
        _ => plain(StatusCode::NOT_FOUND),
    };
    Ok(response)
}

async fn token_for(path: &str, body: &[u8]) -> Result<String, Refused> {
    let settings = settings()?;
    let bad = |(errcode, error): request::Refusal| Refused {
        status: StatusCode::BAD_REQUEST,
        errcode,
        error,
    };
    let ask = if path == "/sfu/get" {
        let req: SfuGet = request::parse(body).map_err(bad)?;
        Ask {
            openid: req.openid_token,
            room: req.room,
            slot: "m.call#ROOM".to_owned(),
            who: Who::Device(req.device_id),
        }
    } else {
        let req: GetToken = request::parse(body).map_err(bad)?;
        Ask {
            openid: req.openid_token,
            room: req.room_id,
            slot: req.slot_id,
            who: Who::Member(req.member),
        }
    };
    let server_name = &ask.openid.matrix_server_name;
    let sub = user_info(server_name, &ask.openid.access_token).await?;
    if request::server_of(&sub) != Some(server_name.as_str()) {
        return Err(unauthorized("the token's user is on another server"));
    }
    let identity = match &ask.who {
        Who::Device(device) => format!("{sub}:{device}"),
        Who::Member(member) => {
            if member.claimed_user_id != sub {
                return Err(unauthorized("claimed_user_id is not the token's user"));
            }
            token::hashed_name(&[&sub, &member.claimed_device_id, &member.id])
        }
    };
    let (room, slot) = (&ask.room, &ask.slot);
    let alias = token::hashed_name(&[room, slot]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if request::full_access(&settings.full_access, server_name) {
        create_room(&settings, &alias, now).await?;
    }
    let jwt = token::access_token(
        &settings.key,
        &settings.secret,
        &identity,
        &Grant::Join { room: &alias },
        now,
    );
    Ok(format!(
        "{{\"url\":{},\"jwt\":{}}}",
        token::json_string(&settings.url),
        token::json_string(&jwt)
    ))
}

fn settings() -> Result<Settings, Refused> {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let settings = Settings {
        url: var("LIVEKIT_URL"),
        key: var("LIVEKIT_KEY"),
        secret: var("LIVEKIT_SECRET"),
        full_access: var("LIVEKIT_FULL_ACCESS_HOMESERVERS"),
    };
    if settings.url.is_empty() || settings.key.is_empty() || settings.secret.is_empty() {
        return Err(Refused {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            errcode: "M_UNKNOWN",
            error: "LIVEKIT_URL, LIVEKIT_KEY and LIVEKIT_SECRET must be set".to_owned(),
        });
    }
    Ok(settings)
}

fn unauthorized(error: &str) -> Refused {
    Refused {
        status: StatusCode::UNAUTHORIZED,
        errcode: "M_UNAUTHORIZED",
        error: error.to_owned(),
    }
}

/// The user the OpenID token belongs to, as its homeserver says.
async fn user_info(server_name: &str, access_token: &str) -> Result<String, Refused> {
    let server = match request::explicit_server(server_name) {
        Some(server) => server,
        None => well_known(server_name)
            .await
            .unwrap_or_else(|| format!("{server_name}:8448")),
    };
    let url = format!(
        "https://{server}/_matrix/federation/v1/openid/userinfo?access_token={}",
        request::query_escape(access_token)
    );
    let answer = get_json(&url)
        .await
        .ok_or_else(|| unauthorized("the homeserver did not confirm the token"))?;
    answer
        .get("sub")
        .and_then(|s| s.as_str())
        .filter(|s| s.starts_with('@'))
        .map(str::to_owned)
        .ok_or_else(|| unauthorized("the homeserver did not name a user"))
}

/// `m.server` of `https://<name>/.well-known/matrix/server`.
async fn well_known(name: &str) -> Option<String> {
    let answer = get_json(&format!("https://{name}/.well-known/matrix/server")).await?;
    let server = answer.get("m.server")?.as_str()?.trim();
    (!server.is_empty()).then(|| request::delegated_server(server))
}

/// A GET answered 200 with a JSON object.
async fn get_json(url: &str) -> Option<serde_json::Value> {
    let request = Request::get(url).body(Body::empty()).ok()?;
    let mut answer = Client::new().send(request).await.ok()?;
    if answer.status() != StatusCode::OK {
        return None;
    }
    let body = answer.body_mut().contents().await.ok()?;
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(|v| v.is_object())
}

/// Creates room `alias` on the SFU (`CreateRoom`, Twirp JSON).
async fn create_room(settings: &Settings, alias: &str, now: u64) -> Result<(), Refused> {
    let failed = || Refused {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        errcode: "M_UNKNOWN",
        error: "unable to create the room on the SFU".to_owned(),
    };
    let jwt = token::access_token(&settings.key, &settings.secret, "", &Grant::CreateRoom, now);
    let url = format!(
        "{}/twirp/livekit.RoomService/CreateRoom",
        request::http_base(&settings.url)
    );
    let body = format!(
        "{{\"name\":{},\"empty_timeout\":300,\"departure_timeout\":20}}",
        token::json_string(alias)
    );
    let request = Request::post(url.as_str())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {jwt}"))
        .body(Body::from(body))
        .map_err(|_| failed())?;
    let answer = Client::new().send(request).await.map_err(|_| failed())?;
    if !answer.status().is_success() {
        return Err(failed());
    }
    Ok(())
}

fn plain(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, json: String) -> Response<Body> {
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    response
}

fn refusal(refused: Refused) -> Response<Body> {
    let json = format!(
        "{{\"errcode\":{},\"error\":{}}}",
        token::json_string(refused.errcode),
        token::json_string(&refused.error)
    );
    json_response(refused.status, json)
}

fn with_cors(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    for (name, value) in [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "POST"),
        (
            "access-control-allow-headers",
            "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token",
        ),
    ] {
        headers.insert(name, value.parse().expect("static"));
    }
    response
}

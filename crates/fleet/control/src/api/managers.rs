//! Field managers: who is writing, and which resources record them.

use axum::extract::Request;
use axum::http::header;
use kantai_api::resources::Resource;

/// Who is writing: `?fieldManager=`, else the user agent's program name, as Kubernetes
/// defaults it.
pub fn field_manager(req: &Request, asked: Option<String>) -> String {
    asked
        .filter(|m| !m.is_empty())
        .or_else(|| {
            req.headers()
                .get(header::USER_AGENT)
                .and_then(|u| u.to_str().ok())
                .and_then(|u| u.split('/').next())
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Whether this resource's writes record field managers (the user's own objects); these
/// also take server-side apply.
pub fn tracks_managers(r: &Resource) -> bool {
    matches!(r.plural, "services" | "routes" | "secrets" | "configmaps")
}

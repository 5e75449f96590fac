//! The web console: static assets embedded in the binary, served at /.

/// The console's routes (`/`, `/assets/*`): they need no token (the console asks the user for one
/// and keeps it in sessionStorage). A stub until the console is built: it serves nothing, so any
/// path outside the API is a 404.
pub fn router() -> axum::Router {
    axum::Router::new()
}

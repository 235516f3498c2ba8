//! Prints the REST API's OpenAPI document (what `GET /api/v1/openapi.json` serves), so that it
//! can be checked without running `switchd`: `cargo run -p control-api --example openapi`.
//! CI validates it with `openapi-spec-validator` (see `.ci/run`).

use utoipa::OpenApi;

fn main() {
    let doc = control_api::api::ApiDoc::openapi();
    match doc.to_pretty_json() {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("openapi: cannot serialise the document: {e}");
            std::process::exit(1);
        }
    }
}

//! Entry point of the WASM bundle: mount the app. Everything else lives in the library.

fn main() {
    console_error_panic_hook_free();
    leptos::mount::mount_to_body(chat_web::App);
}

/// Panics already reach the browser console through wasm-bindgen's default hook; nothing
/// more is installed, to keep the bundle small.
fn console_error_panic_hook_free() {}

//! Entry point of the WASM bundle: report panics readably, then mount the app. Everything
//! else lives in the library.

fn main() {
    // Without this a panic shows in the console only as "RuntimeError: unreachable".
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into())
    }));
    leptos::mount::mount_to_body(chat_web::App);
}

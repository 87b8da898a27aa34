#![no_main]

use std::sync::LazyLock;

/// A self-signed certificate for the session's server side, made once.
static CONFIG: LazyLock<wren::fuzz::TlsConfig> = LazyLock::new(|| {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    wren::fuzz::tls_config(&issued.cert.pem(), &issued.signing_key.serialize_pem())
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| wren::fuzz::tls(&CONFIG, data));

use super::*;
use crate::auth::AuthConfigError;

#[test]
fn embedded_default_parses_to_the_builtin_defaults() {
    let c = Config::from_toml(DEFAULT_TOML, "<embedded default>").unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn unknown_field_names_line_and_field() {
    let text = "[server]\nlisten = \"127.0.0.1:1\"\nwrokers = 2\n";
    let e = Config::from_toml(text, "my.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.field().as_deref(), Some("wrokers"));
    assert!(e.to_string().starts_with("my.toml:3"), "{e}");
}

#[test]
fn wrong_type_names_line_and_field() {
    let text = "[server]\n\nworkers = \"many\"\n";
    let e = Config::from_toml(text, "c.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.field().as_deref(), Some("server.workers"));
}

#[test]
fn out_of_range_names_line_and_field() {
    let text = "[write_queue]\nmax_bytes = 4096\nhigh_water_bytes = 8192\n";
    let e = Config::from_toml(text, "c.toml").unwrap_err();
    assert!(
        matches!(e, ConfigError::Invalid { source: InvalidConfig::BadValue { .. }, .. }),
        "{e:?}"
    );
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.field().as_deref(), Some("write_queue.high_water_bytes"));
    assert!(e.to_string().starts_with("c.toml:3: field `write_queue.high_water_bytes`: "));
}

#[test]
fn jwt_secret_comes_from_the_environment() {
    let secret = "0123456789abcdef0123456789abcdef-from-env";
    let c = Config::from_toml_with_env("", "c", |k| {
        (k == "WSEDGE_JWT_SECRET").then(|| secret.to_string())
    })
    .unwrap();
    assert_eq!(c.auth.jwt_hs256_secret, secret);
    // A too-short secret from the environment is refused like one in the file.
    let e = Config::from_toml_with_env("", "c", |_| Some("short".into())).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                source: InvalidConfig::Auth(AuthConfigError::Hs256SecretTooShort { len: 5 }),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.field().as_deref(), Some("auth.jwt_hs256_secret"));
}

#[test]
fn auth_errors_name_the_line_of_the_api_key_entry() {
    let text = "[auth]\nrequired = true\n\n[[auth.api_keys]]\nname = \"a\"\nkey = \"k-1\"\n\n\
                [[auth.api_keys]]\nname = \"b\"\nkey = \"k-1\"\n";
    let e = Config::from_toml(text, "keys.toml").unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::Invalid {
                source: InvalidConfig::Auth(AuthConfigError::ApiKeyReused { index: 1, name }),
                ..
            } if name == "b"
        ),
        "{e:?}"
    );
    assert_eq!(e.field().as_deref(), Some("auth.api_keys[1].key"));
    assert_eq!(e.line(), Some(10));
    assert!(e.to_string().starts_with("keys.toml:10: auth.api_keys[1].key: same key"), "{e}");
    assert!(!e.to_string().contains("k-1"), "never the key itself: {e}");
}

#[test]
fn partial_file_keeps_other_defaults() {
    let c = Config::from_toml("[health]\nping_interval_ms = 1000\n", "c").unwrap();
    assert_eq!(c.health.ping_interval_ms, 1000);
    assert_eq!(c.health.dead_client_ms, 60_000);
    assert_eq!(c.server, ServerConfig::default());
}

#[test]
fn tls_cipher_order_is_server_or_client_and_a_typo_names_line_and_field() {
    let c = Config::from_toml("[tls]\ncipher_order = \"client\"\n", "c.toml").unwrap();
    assert_eq!(c.tls.cipher_order, CipherOrder::Client);
    assert_eq!(Config::default().tls.cipher_order, CipherOrder::Server);
    let e = Config::from_toml("[tls]\n\ncipher_order = \"fastest\"\n", "c.toml").unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    assert_eq!(e.field().as_deref(), Some("tls.cipher_order"), "{e}");
}

//! `specs/crm.toml` through the macro: an integration each customer connects
//! with their own account (OAuth2 authorization code), whose rate limit and
//! circuit breaker are per connection.

use integration_runtime::{CallRequest, Integration, Mode, PolicyScope};
use serde_json::json;

integration_runtime::integration!("../specs/crm.toml");

use crm::{Crm, CrmConfig, CrmRequest};

fn config() -> CrmConfig {
    CrmConfig {
        base_url: "http://127.0.0.1:9".into(),
        token_url: "http://127.0.0.1:9/oauth/token".into(),
        authorization_url: "http://127.0.0.1:9/oauth/authorize".into(),
        client_id: "crm-client".into(),
        client_secret: "crm-client-secret-5d1e".into(),
    }
}

#[test]
fn the_rate_limit_and_the_circuit_breaker_are_per_connection() {
    let descriptor = Crm::descriptor();
    let rate_limit = descriptor.policy.rate_limit.expect("the spec sets a rate limit");
    assert_eq!(
        (rate_limit.per_second, rate_limit.burst, rate_limit.scope),
        (5.0, 5, PolicyScope::Connection)
    );
    let breaker = descriptor
        .policy
        .circuit_breaker
        .expect("the spec sets a circuit breaker");
    assert_eq!(
        (breaker.failure_threshold, breaker.open_for_ms, breaker.scope),
        (3, 30_000, PolicyScope::Connection)
    );
    let [create_contact] = descriptor.endpoints else {
        panic!("one endpoint: {:?}", descriptor.endpoints)
    };
    assert_eq!(
        (create_contact.name, create_contact.method, create_contact.path),
        ("create_contact", "POST", "/contacts")
    );
    assert!(create_contact.starts_calls && create_contact.mode == Mode::Sync);
    assert_eq!(
        create_contact.policy.rate_limit.map(|r| r.scope),
        Some(PolicyScope::Connection),
        "the endpoint has the integration's policy"
    );
}

#[test]
fn a_contact_request_is_validated_against_the_spec() {
    let request = CrmRequest::from_params("create_contact", &json!({ "name": "Ada Lovelace" })).unwrap();
    let CrmRequest::CreateContact(contact) = request;
    assert_eq!(contact.name, "Ada Lovelace");
    let integration = Crm::new(config()).unwrap();
    let error = integration
        .validate("create_contact", &json!({ "name": "" }))
        .unwrap_err();
    assert!(
        error.is_invalid_request() && error.to_string().contains("name"),
        "{error}"
    );
}

// The only test here that reads the process environment.
#[test]
fn the_authorization_url_is_a_setting_with_the_spec_default() {
    std::env::set_var("CRM_CLIENT_ID", "crm-client");
    std::env::set_var("CRM_CLIENT_SECRET", "crm-client-secret-5d1e");
    std::env::remove_var("CRM_AUTHORIZATION_URL");
    let from_spec = Crm::from_env().unwrap();
    assert_eq!(
        from_spec.config().authorization_url,
        "https://crm.example.com/oauth/authorize"
    );
    assert_eq!(from_spec.config().token_url, "https://crm.example.com/oauth/token");
    std::env::set_var("CRM_AUTHORIZATION_URL", "https://eu.crm.example.com/oauth/authorize");
    let from_env = Crm::from_env().unwrap();
    assert_eq!(
        from_env.config().authorization_url,
        "https://eu.crm.example.com/oauth/authorize"
    );
    let debug = format!("{from_env:?}");
    assert!(!debug.contains("crm-client-secret-5d1e"), "{debug}");
}

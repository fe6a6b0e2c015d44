// A type the derive cannot judge by its name is checked by the trait system,
// which still names the spec type that was expected.
#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "./specs/derive_wrong_field_type.toml", endpoint = "ping")]
struct Greeting {
    text: std::net::IpAddr,
}

fn main() {}

// @generated from specs/crm.toml by integration-spec; do not edit.
// Update with `UPDATE_SNAPSHOTS=1 cargo test -p integration-tests --test snapshots`.

/// The `Crm` integration, generated from its spec.
///
/// Contacts in each customer's own CRM account.
pub mod crm {
    #[allow(unused_imports)]
    use ::integration_runtime::__private as __rt;
    /// The `NewContact` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct NewContact {
        /// `name` (string).
        pub name: __rt::String,
    }
    impl NewContact {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(&self) -> __rt::Result<(), __rt::ValidationError> {
            let mut violations = __rt::Violations::new();
            violations.len_in("name", self.name.chars().count(), 1..);
            violations.finish()
        }
    }
    __rt::impl_entity!(NewContact);
    /// The `Contact` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Contact {
        /// `id` (string).
        pub id: __rt::String,
    }
    __rt::impl_entity!(Contact, unconstrained);
    /// Where a `Crm` call is in its lifecycle.
    pub type CrmStatus = __rt::CallStatus;
    /// The typed request parameters of a `Crm` call, one variant per endpoint that starts calls.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(
        crate = "::integration_runtime::__private::serde",
        tag = "endpoint",
        content = "params"
    )]
    pub enum CrmRequest {
        /// Parameters of `create_contact` (POST /contacts).
        #[serde(rename = "create_contact")]
        CreateContact(NewContact),
    }
    impl __rt::CallRequest for CrmRequest {
        const DESCRIPTOR: &'static __rt::IntegrationDescriptor = &__DESCRIPTOR;
    }
    impl __rt::IntoCall for CrmRequest {
        const INTEGRATION: &'static str = "Crm";
        fn endpoint(&self) -> &'static str {
            match *self {
                CrmRequest::CreateContact(_) => "create_contact",
            }
        }
        fn into_params(self) -> __rt::serde_json::Value {
            match self {
                CrmRequest::CreateContact(params) => __rt::to_value(&params),
            }
        }
    }
    impl __rt::From<NewContact> for CrmRequest {
        fn from(params: NewContact) -> Self {
            CrmRequest::CreateContact(params)
        }
    }
    impl __rt::IntoCall for NewContact {
        const INTEGRATION: &'static str = "Crm";
        fn endpoint(&self) -> &'static str {
            "create_contact"
        }
        fn into_params(self) -> __rt::serde_json::Value {
            __rt::to_value(&self)
        }
    }
    /// The typed response data of a finished `Crm` call.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize)]
    #[serde(crate = "::integration_runtime::__private::serde", untagged)]
    pub enum CrmResponse {
        /// Result of a `create_contact` call.
        CreateContact(Contact),
    }
    impl __rt::CallResponse for CrmResponse {
        fn from_result(
            endpoint: &str,
            value: &__rt::serde_json::Value,
        ) -> __rt::Result<Self, __rt::ClientError> {
            match endpoint {
                "create_contact" => {
                    __rt::read_stored(endpoint, value, "stored response data")
                        .map(CrmResponse::CreateContact)
                }
                _ => __rt::Err(__rt::unknown_endpoint("Crm", endpoint)),
            }
        }
    }
    /// One call to `Crm`: the record business code creates and the runtime drives to a terminal state.
    pub type CrmCall = __rt::Call<CrmRequest, CrmResponse>;
    /// A lifecycle event of a `Crm` call: `initialized -> processing -> completed | failed`.
    pub type CrmEvent = __rt::Event<CrmResponse>;
    /// Settings of the `Crm` integration. Secrets are redacted in `Debug` output.
    #[derive(Debug, Clone)]
    pub struct CrmConfig {
        /// Where requests go.
        pub base_url: __rt::String,
        /// Where OAuth2 tokens are requested.
        pub token_url: __rt::String,
        /// Where each connection's user is sent to authorize the integration.
        pub authorization_url: __rt::String,
        /// OAuth2 client id of this app at the CRM (from `CRM_CLIENT_ID`).
        pub client_id: __rt::Secret,
        /// OAuth2 client secret of this app at the CRM (from `CRM_CLIENT_SECRET`).
        pub client_secret: __rt::Secret,
    }
    impl CrmConfig {
        /// Reads every setting from the environment, and reports every
        /// missing variable (with what it is for) in one error.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            let mut env = __rt::EnvReader::new("Crm");
            let base_url = env.value_or("CRM_BASE_URL", "https://api.crm.example.com");
            let token_url = env
                .value_or("CRM_TOKEN_URL", "https://crm.example.com/oauth/token");
            let authorization_url = env
                .value_or(
                    "CRM_AUTHORIZATION_URL",
                    "https://crm.example.com/oauth/authorize",
                );
            let client_id = env
                .secret("CRM_CLIENT_ID", "OAuth2 client id of this app at the CRM");
            let client_secret = env
                .secret(
                    "CRM_CLIENT_SECRET",
                    "OAuth2 client secret of this app at the CRM",
                );
            env.finish()?;
            __rt::Ok(CrmConfig {
                base_url,
                token_url,
                authorization_url,
                client_id,
                client_secret,
            })
        }
    }
    /// A typed HTTP client of `Crm`: one method per endpoint.
    #[derive(Debug, Clone)]
    pub struct CrmClient {
        http: __rt::HttpClient,
    }
    impl CrmClient {
        /// A client for the given settings.
        pub fn new(config: &CrmConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let http = __rt::HttpClient::for_integration(
                &__DESCRIPTOR,
                &config.base_url,
                __rt::Auth::OAuth2(__rt::OAuth2Config {
                    token_url: config.token_url.clone(),
                    client_id: config.client_id.clone(),
                    client_secret: __rt::Some(config.client_secret.clone()),
                    scopes: ::std::vec![__rt::String::from("contacts.write")],
                    refresh_token: __rt::None,
                    authorization_url: __rt::Some(config.authorization_url.clone()),
                }),
            )?;
            __rt::Ok(CrmClient { http })
        }
        /// This client, sending through `client`; see
        /// [`Crm::with_reqwest_client`]: the spec's policies apply on top.
        #[must_use]
        pub fn with_reqwest_client(self, client: __rt::reqwest::Client) -> Self {
            CrmClient {
                http: self.http.with_reqwest_client(client),
            }
        }
        /// `POST /contacts`.
        pub async fn create_contact(
            &self,
            request: &NewContact,
            options: &__rt::CallOptions,
        ) -> __rt::Result<__rt::Reply<Contact>, __rt::ClientError> {
            __rt::send(&self.http, &__ENDPOINT_CREATE_CONTACT, request, options).await
        }
    }
    static __ENDPOINT_CREATE_CONTACT: __rt::Exchange = __rt::Exchange {
        request: __rt::RequestSpec {
            endpoint: &__DESCRIPTOR.endpoints[0usize],
            path: &[__rt::PathPart::Literal("/contacts")],
            query: &[],
            headers: &[],
            body: &[(&["name"], __rt::Source::Field("name"))],
            encoding: __rt::BodyEncoding::Json,
            error: __rt::Some(&[__rt::Key("error"), __rt::Key("message")]),
        },
        reply: __rt::ReplySpec {
            endpoint: "create_contact",
            status: __rt::None,
            external_id: __rt::ExternalIdSpec::Generated,
            result: __rt::Some(&[("id", &[__rt::Key("id")])]),
            error: __rt::Some(&[__rt::Key("error"), __rt::Key("message")]),
        },
    };
    /// The `Crm` integration, ready to register with the runtime.
    #[derive(Debug, Clone)]
    pub struct Crm {
        config: CrmConfig,
        client: CrmClient,
    }
    impl Crm {
        /// The integration with the given settings.
        pub fn new(config: CrmConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let client = CrmClient::new(&config)?;
            __rt::Ok(Crm { config, client })
        }
        /// The integration configured from the environment; every missing
        /// variable is reported at once, with what it is for.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            Self::new(CrmConfig::from_env()?)
        }
        /// The integration, sending through `client`, a `reqwest::Client` you
        /// configured (proxies, root certificates, default headers); the spec's
        /// timeouts, size limits, auth and redirect rules still apply on top.
        /// Build it with `redirect(reqwest::redirect::Policy::none())`: a client
        /// that follows redirects itself bypasses the spec's redirect rules (the
        /// request then fails, but has been sent on). Its own connect timeout
        /// applies instead of the spec's.
        ///
        /// `Crm::from_env()?.with_reqwest_client(client)`
        #[must_use]
        pub fn with_reqwest_client(mut self, client: __rt::reqwest::Client) -> Self {
            self.client = self.client.with_reqwest_client(client);
            self
        }
        /// The typed client, for direct calls.
        pub fn client(&self) -> &CrmClient {
            &self.client
        }
        /// The settings.
        pub fn config(&self) -> &CrmConfig {
            &self.config
        }
        /// Static facts about the integration: endpoints, policies, polling, webhook.
        pub fn descriptor() -> &'static __rt::IntegrationDescriptor {
            &__DESCRIPTOR
        }
    }
    impl __rt::Generated for Crm {
        const GLUE: &'static __rt::Glue = &__rt::Glue {
            descriptor: &__DESCRIPTOR,
            calls: &[
                __rt::CallGlue::new::<NewContact, Contact>(&__ENDPOINT_CREATE_CONTACT),
            ],
            poll: __rt::None,
            webhook: __rt::None,
        };
        fn http(&self) -> &__rt::HttpClient {
            &self.client.http
        }
    }
    const __POLICY: __rt::PolicyDescriptor = __rt::PolicyDescriptor {
        retry: __rt::RetryPolicy::SPEC_DEFAULT,
        circuit_breaker: __rt::Some(__rt::CircuitBreakerPolicy {
            failure_threshold: 3u32,
            open_for_ms: 30000u64,
            half_open_probes: 1u32,
            scope: __rt::PolicyScope::Connection,
        }),
        rate_limit: __rt::Some(__rt::RateLimitPolicy {
            per_second: 5f64,
            burst: 5u32,
            scope: __rt::PolicyScope::Connection,
        }),
        ..__rt::PolicyDescriptor::DEFAULT
    };
    #[doc(hidden)]
    pub static __DESCRIPTOR: __rt::IntegrationDescriptor = __rt::IntegrationDescriptor {
        name: "Crm",
        module: "crm",
        endpoints: &[
            __rt::EndpointDescriptor {
                starts_calls: true,
                idempotent: false,
                request_fields: __rt::RequestFields {
                    all: &["name"],
                    path: &[],
                    headers: &[],
                },
                ..__rt::EndpointDescriptor::new(
                    "create_contact",
                    "POST",
                    "/contacts",
                    __POLICY,
                )
            },
        ],
        policy: __POLICY,
        polling: __rt::None,
        webhook: __rt::None,
        fingerprint: "fnv1a64:7680caa23dc254f7",
    };
}

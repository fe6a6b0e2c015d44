// @generated from specs/translate.toml by integration-spec; do not edit.
// Update with `UPDATE_SNAPSHOTS=1 cargo test -p integration-tests --test snapshots`.

/// The `Translate` integration, generated from its spec.
///
/// Machine translation: one request, one answer.
pub mod translate {
    #[allow(unused_imports)]
    use ::integration_runtime::__private as __rt;
    /// The `Translation` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Translation {
        /// The text to translate.
        pub text: __rt::String,
        /// ISO 639-1 code; detected when absent.
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub source_lang: __rt::Option<__rt::String>,
        /// `target_lang` (string).
        pub target_lang: __rt::String,
        /// `formality` (enum).
        #[serde(default = "__default_translation_formality")]
        pub formality: TranslationFormality,
        /// `glossary_id` (uuid).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub glossary_id: __rt::Option<__rt::uuid::Uuid>,
    }
    impl Translation {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(&self) -> __rt::Result<(), __rt::ValidationError> {
            let mut violations = __rt::Violations::new();
            violations.len_in("text", self.text.chars().count(), 1..=10000);
            violations.len_in("target_lang", self.target_lang.chars().count(), 2..=5);
            violations.finish()
        }
    }
    __rt::impl_entity!(Translation);
    /// Allowed values of `Translation.formality`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[derive(__rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub enum TranslationFormality {
        /// `default`
        #[serde(rename = "default")]
        Default,
        /// `more`
        #[serde(rename = "more")]
        More,
        /// `less`
        #[serde(rename = "less")]
        Less,
    }
    impl TranslationFormality {
        /// The value as the spec spells it.
        pub fn as_str(&self) -> &'static str {
            match self {
                TranslationFormality::Default => "default",
                TranslationFormality::More => "more",
                TranslationFormality::Less => "less",
            }
        }
    }
    fn __default_translation_formality() -> TranslationFormality {
        TranslationFormality::Default
    }
    /// The `Translated` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Translated {
        /// `text` (string).
        pub text: __rt::String,
        /// `detected_lang` (string).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub detected_lang: __rt::Option<__rt::String>,
        /// `characters` (int).
        pub characters: i64,
    }
    __rt::impl_entity!(Translated, unconstrained);
    /// The `Glossary` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Glossary {
        /// `id` (uuid).
        pub id: __rt::uuid::Uuid,
        /// `name` (string).
        pub name: __rt::String,
        /// `source_lang` (string).
        pub source_lang: __rt::String,
        /// `target_lang` (string).
        pub target_lang: __rt::String,
        /// `entry_count` (int).
        pub entry_count: i64,
    }
    impl Glossary {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(&self) -> __rt::Result<(), __rt::ValidationError> {
            let mut violations = __rt::Violations::new();
            violations.int_in("entry_count", self.entry_count, 0..);
            violations.finish()
        }
    }
    __rt::impl_entity!(Glossary);
    /// Where a `Translate` call is in its lifecycle.
    pub type TranslateStatus = __rt::CallStatus;
    /// The typed request parameters of a `Translate` call, one variant per endpoint that starts calls.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(
        crate = "::integration_runtime::__private::serde",
        tag = "endpoint",
        content = "params"
    )]
    pub enum TranslateRequest {
        /// Parameters of `translate` (POST /v2/translate).
        #[serde(rename = "translate")]
        Translate(Translation),
    }
    impl __rt::CallRequest for TranslateRequest {
        const DESCRIPTOR: &'static __rt::IntegrationDescriptor = &__DESCRIPTOR;
    }
    impl __rt::IntoCall for TranslateRequest {
        const INTEGRATION: &'static str = "Translate";
        fn endpoint(&self) -> &'static str {
            match *self {
                TranslateRequest::Translate(_) => "translate",
            }
        }
        fn into_params(self) -> __rt::serde_json::Value {
            match self {
                TranslateRequest::Translate(params) => __rt::to_value(&params),
            }
        }
    }
    impl __rt::From<Translation> for TranslateRequest {
        fn from(params: Translation) -> Self {
            TranslateRequest::Translate(params)
        }
    }
    impl __rt::IntoCall for Translation {
        const INTEGRATION: &'static str = "Translate";
        fn endpoint(&self) -> &'static str {
            "translate"
        }
        fn into_params(self) -> __rt::serde_json::Value {
            __rt::to_value(&self)
        }
    }
    /// The typed response data of a finished `Translate` call.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize)]
    #[serde(crate = "::integration_runtime::__private::serde", untagged)]
    pub enum TranslateResponse {
        /// Result of a `translate` call.
        Translate(Translated),
    }
    impl __rt::CallResponse for TranslateResponse {
        fn from_result(
            endpoint: &str,
            value: &__rt::serde_json::Value,
        ) -> __rt::Result<Self, __rt::ClientError> {
            match endpoint {
                "translate" => {
                    __rt::read_stored(endpoint, value, "stored response data")
                        .map(TranslateResponse::Translate)
                }
                _ => __rt::Err(__rt::unknown_endpoint("Translate", endpoint)),
            }
        }
    }
    /// One call to `Translate`: the record business code creates and the runtime drives to a terminal state.
    pub type TranslateCall = __rt::Call<TranslateRequest, TranslateResponse>;
    /// A lifecycle event of a `Translate` call: `initialized -> processing -> completed | failed`.
    pub type TranslateEvent = __rt::Event<TranslateResponse>;
    /// Settings of the `Translate` integration. Secrets are redacted in `Debug` output.
    #[derive(Debug, Clone)]
    pub struct TranslateConfig {
        /// Where requests go.
        pub base_url: __rt::String,
        /// API key from the translation dashboard (from `TRANSLATE_API_KEY`).
        pub api_key: __rt::Secret,
    }
    impl TranslateConfig {
        /// Reads every setting from the environment, and reports every
        /// missing variable (with what it is for) in one error.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            let mut env = __rt::EnvReader::new("Translate");
            let base_url = env
                .value_or("TRANSLATE_BASE_URL", "https://translate.example.com");
            let api_key = env
                .secret("TRANSLATE_API_KEY", "API key from the translation dashboard");
            env.finish()?;
            __rt::Ok(TranslateConfig {
                base_url,
                api_key,
            })
        }
    }
    /// A typed HTTP client of `Translate`: one method per endpoint.
    #[derive(Debug, Clone)]
    pub struct TranslateClient {
        http: __rt::HttpClient,
    }
    impl TranslateClient {
        /// A client for the given settings.
        pub fn new(config: &TranslateConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let http = __rt::HttpClient::for_integration(
                &__DESCRIPTOR,
                &config.base_url,
                __rt::Auth::ApiKeyHeader {
                    name: "X-Api-Key",
                    key: config.api_key.clone(),
                },
            )?;
            __rt::Ok(TranslateClient { http })
        }
        /// This client, sending through `client`; see
        /// [`Translate::with_reqwest_client`]: the spec's policies apply on top.
        #[must_use]
        pub fn with_reqwest_client(self, client: __rt::reqwest::Client) -> Self {
            TranslateClient {
                http: self.http.with_reqwest_client(client),
            }
        }
        /// `POST /v2/translate`.
        pub async fn translate(
            &self,
            request: &Translation,
            options: &__rt::CallOptions,
        ) -> __rt::Result<__rt::Reply<Translated>, __rt::ClientError> {
            __rt::send(&self.http, &__ENDPOINT_TRANSLATE, request, options).await
        }
        /// `GET /v2/glossaries`: the `Glossary` items at `$.glossaries` of every page (cursor pagination).
        ///
        /// Nothing is sent until the first item is asked for; each further page is
        /// fetched when the previous one's items are consumed, and retried under the
        /// endpoint's retry policy. Iterate with `next_item().await`, `collect_all().await`,
        /// or as a `Stream`.
        pub fn list_glossaries(&self) -> __rt::Paginator<Glossary> {
            __rt::list(&self.http, &__ENDPOINT_LIST_GLOSSARIES, __rt::Input::none())
        }
    }
    static __ENDPOINT_TRANSLATE: __rt::Exchange = __rt::Exchange {
        request: __rt::RequestSpec {
            endpoint: &__DESCRIPTOR.endpoints[0usize],
            path: &[__rt::PathPart::Literal("/v2/translate")],
            query: &[("source", __rt::Source::Field("source_lang"))],
            headers: &[
                (
                    "X-Client",
                    __rt::Source::Constant(__rt::Constant::String("spec-integrations")),
                ),
            ],
            body: &[
                (&["text"], __rt::Source::Field("text")),
                (&["target", "lang"], __rt::Source::Field("target_lang")),
                (
                    &["target", "formality"],
                    __rt::Source::ValueMap {
                        field: "formality",
                        map: &[
                            ("default", __rt::Constant::String("auto")),
                            ("more", __rt::Constant::String("formal")),
                            ("less", __rt::Constant::String("informal")),
                        ],
                    },
                ),
                (&["glossary"], __rt::Source::Field("glossary_id")),
            ],
            encoding: __rt::BodyEncoding::Json,
            error: __rt::Some(&[__rt::Key("error"), __rt::Key("message")]),
        },
        reply: __rt::ReplySpec {
            endpoint: "translate",
            status: __rt::None,
            external_id: __rt::ExternalIdSpec::Generated,
            result: __rt::Some(
                &[
                    ("text", &[__rt::Key("translation"), __rt::Key("text")]),
                    (
                        "detected_lang",
                        &[
                            __rt::Key("translation"),
                            __rt::Key("source"),
                            __rt::Key("detected"),
                        ],
                    ),
                    ("characters", &[__rt::Key("usage"), __rt::Key("characters")]),
                ],
            ),
            error: __rt::Some(&[__rt::Key("error"), __rt::Key("message")]),
        },
    };
    static __ENDPOINT_LIST_GLOSSARIES: __rt::ListSpec = __rt::ListSpec {
        request: __rt::RequestSpec {
            endpoint: &__DESCRIPTOR.endpoints[1usize],
            path: &[__rt::PathPart::Literal("/v2/glossaries")],
            query: &[],
            headers: &[],
            body: &[],
            encoding: __rt::BodyEncoding::Json,
            error: __rt::Some(&[__rt::Key("error"), __rt::Key("message")]),
        },
        pagination: __rt::Pagination::Cursor {
            cursor: &[__rt::Key("next_page_token")],
            param: "page_token",
        },
        items: &[__rt::Key("glossaries")],
    };
    /// The `Translate` integration, ready to register with the runtime.
    #[derive(Debug, Clone)]
    pub struct Translate {
        config: TranslateConfig,
        client: TranslateClient,
    }
    impl Translate {
        /// The integration with the given settings.
        pub fn new(config: TranslateConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let client = TranslateClient::new(&config)?;
            __rt::Ok(Translate { config, client })
        }
        /// The integration configured from the environment; every missing
        /// variable is reported at once, with what it is for.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            Self::new(TranslateConfig::from_env()?)
        }
        /// The integration, sending through `client`, a `reqwest::Client` you
        /// configured (proxies, root certificates, default headers); the spec's
        /// timeouts, size limits, auth and redirect rules still apply on top.
        /// Build it with `redirect(reqwest::redirect::Policy::none())`: a client
        /// that follows redirects itself bypasses the spec's redirect rules (the
        /// request then fails, but has been sent on). Its own connect timeout
        /// applies instead of the spec's.
        ///
        /// `Translate::from_env()?.with_reqwest_client(client)`
        #[must_use]
        pub fn with_reqwest_client(mut self, client: __rt::reqwest::Client) -> Self {
            self.client = self.client.with_reqwest_client(client);
            self
        }
        /// The typed client, for direct calls.
        pub fn client(&self) -> &TranslateClient {
            &self.client
        }
        /// The settings.
        pub fn config(&self) -> &TranslateConfig {
            &self.config
        }
        /// Static facts about the integration: endpoints, policies, polling, webhook.
        pub fn descriptor() -> &'static __rt::IntegrationDescriptor {
            &__DESCRIPTOR
        }
    }
    impl __rt::Generated for Translate {
        const GLUE: &'static __rt::Glue = &__rt::Glue {
            descriptor: &__DESCRIPTOR,
            calls: &[
                __rt::CallGlue::new::<Translation, Translated>(&__ENDPOINT_TRANSLATE),
            ],
            poll: __rt::None,
            webhook: __rt::None,
        };
        fn http(&self) -> &__rt::HttpClient {
            &self.client.http
        }
    }
    const __POLICY: __rt::PolicyDescriptor = __rt::PolicyDescriptor {
        timeout_ms: 5000u64,
        retry: __rt::RetryPolicy {
            max_attempts: 3u32,
            initial_backoff_ms: 100u64,
            max_backoff_ms: 2000u64,
            ..__rt::RetryPolicy::SPEC_DEFAULT
        },
        rate_limit: __rt::Some(__rt::RateLimitPolicy {
            per_second: 50f64,
            burst: 100u32,
            scope: __rt::PolicyScope::Integration,
        }),
        concurrency: __rt::Some(16u32),
        ..__rt::PolicyDescriptor::DEFAULT
    };
    #[doc(hidden)]
    pub static __DESCRIPTOR: __rt::IntegrationDescriptor = __rt::IntegrationDescriptor {
        name: "Translate",
        module: "translate",
        endpoints: &[
            __rt::EndpointDescriptor {
                starts_calls: true,
                request_fields: __rt::RequestFields {
                    all: &[
                        "text",
                        "source_lang",
                        "target_lang",
                        "formality",
                        "glossary_id",
                    ],
                    path: &[],
                    headers: &[],
                },
                ..__rt::EndpointDescriptor::new(
                    "translate",
                    "POST",
                    "/v2/translate",
                    __POLICY,
                )
            },
            __rt::EndpointDescriptor::new(
                "list_glossaries",
                "GET",
                "/v2/glossaries",
                __POLICY,
            ),
        ],
        policy: __POLICY,
        polling: __rt::None,
        webhook: __rt::None,
        fingerprint: "fnv1a64:3d9d75bc3d3e3366",
    };
}

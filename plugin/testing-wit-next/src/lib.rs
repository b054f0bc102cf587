//! Built against `flytewasm:plugin@0.2.0`, a contract version this host
//! does not serve: loading it must fail with a message naming the version.

wit_bindgen::generate!({
    inline: "
        package flytewasm:plugin@0.2.0;

        interface host {
            log: func(message: string);
        }

        world plugin {
            import host;
            export describe: func() -> string;
        }
    ",
});

struct Next;

impl Guest for Next {
    fn describe() -> String {
        flytewasm::plugin::host::log("describing");
        "next".into()
    }
}

export!(Next);

// The developer portal, for any authenticated caller: who the credential is, its API keys
// (a new key is shown once, here only; revoking takes one click), its debates and their token
// usage per provider.

import { ago, api, badge, el, failure, fill, live, signIn, table } from "./api.js";

function me(who) {
  const body = document.querySelector("#me .body");
  const credential = who.credential ?? {};
  const via =
    credential.kind === "api_key"
      ? `API key ${credential.name ?? ""} (${credential.id ?? ""})`
      : credential.kind === "jwt"
        ? `JWT ${credential.jti}`
        : credential.kind ?? "-";
  fill(
    body,
    el(
      "dl",
      { className: "facts" },
      el("div", {}, el("dt", {}, "Subject"), el("dd", { id: "me-subject" }, who.subject)),
      el("div", {}, el("dt", {}, "Role"), el("dd", { id: "me-role" }, who.role)),
      el("div", {}, el("dt", {}, "Scope"), el("dd", {}, who.scope?.kind ?? "-")),
      el("div", {}, el("dt", {}, "Credential"), el("dd", {}, via)),
      el(
        "div",
        {},
        el("dt", {}, "Expires"),
        el("dd", {}, who.expires_at ? new Date(who.expires_at * 1000).toLocaleString() : "never"),
      ),
    ),
    el("p", {}, `May: ${who.permissions.join(", ")}`),
  );
}

function keys(who) {
  const body = document.querySelector("#keys .body");
  const shown = el("div", { id: "new-key", "aria-live": "polite" });
  const listing = el("div", { id: "key-list" });
  const name = el("input", { id: "key-name", name: "name", required: true, maxLength: 64, autocomplete: "off" });
  const role = el(
    "select",
    { id: "key-role", name: "role" },
    ["reader", "operator", "admin"].map((r) => el("option", { value: r }, r)),
  );
  const ttl = el("input", { id: "key-ttl", name: "ttl", type: "number", min: 1, placeholder: "no expiry" });
  const problem = el("p", { className: "error", role: "alert", hidden: true });
  const create = async (event) => {
    event.preventDefault();
    problem.hidden = true;
    try {
      const body = { name: name.value.trim(), role: role.value };
      if (ttl.value) body.ttl_secs = Number(ttl.value);
      const created = await api("/api/auth/api-key", { method: "POST", body });
      const copy = el("output", { id: "created-key", className: "secret" }, created.key);
      fill(
        shown,
        el(
          "div",
          { className: "card once" },
          el("h3", {}, `Key ${created.name} created (role ${created.role})`),
          el("p", {}, badge("shown once", "warn"), " Copy it now: it is not stored anywhere aragora can show it again."),
          copy,
          el("button", { type: "button", className: "secondary", onclick: () => fill(shown) }, "I have stored it; hide it"),
        ),
      );
      name.value = "";
      await refresh();
    } catch (err) {
      problem.textContent = err.message;
      problem.hidden = false;
    }
  };
  const form =
    who.role === "admin"
      ? el(
          "form",
          { className: "inline", onsubmit: create },
          el("label", { for: "key-name" }, "Name"),
          name,
          el("label", { for: "key-role" }, "Role"),
          role,
          el("label", { for: "key-ttl" }, "Lifetime (seconds)"),
          ttl,
          el("button", { type: "submit" }, "Create key"),
          problem,
        )
      : el("p", {}, badge("needs the admin role", "info"), " Creating and listing keys is for admins; ask one for a key.");
  fill(body, form, shown, listing);
  const refresh = live(listing, 5000, async () => {
    if (who.role !== "admin") return [];
    const { api_keys: list, total } = await api("/api/auth/api-keys");
    return table(
      ["Prefix", "Name", "Role", "State", "Created", "Action"],
      list.map((key) => [
        el("code", {}, key.prefix),
        key.name,
        key.role,
        badge(key.state, key.state === "active" ? "ok" : "bad"),
        `${ago(new Date(key.created_at_ms).toISOString())} by ${key.created_by}`,
        key.state === "active"
          ? el(
              "button",
              {
                type: "button",
                "data-focus": `revoke-${key.id}`,
                "aria-label": `Revoke ${key.name} (${key.prefix})`,
                onclick: async (event) => {
                  const target = event.currentTarget;
                  target.disabled = true;
                  try {
                    await api(`/api/auth/api-key/${encodeURIComponent(key.id)}`, { method: "DELETE" });
                  } catch (err) {
                    target.after(failure(err));
                  }
                  await refresh();
                },
              },
              "Revoke",
            )
          : "-",
      ]),
      `API keys (${total})`,
    );
  });
}

function usage() {
  live("usage", 5000, async () => {
    const { debates, totals } = await api("/api/auth/me/usage");
    const tokens = (u) => `${u.provider}: ${u.input_tokens} in, ${u.output_tokens} out`;
    return [
      totals?.length
        ? table(["Provider", "Input tokens", "Output tokens"], totals.map((t) => [t.provider, String(t.input_tokens), String(t.output_tokens)]), "Totals")
        : el("p", {}, "No token usage yet (the built-in offline agents use none)."),
      debates.length
        ? table(
            ["Topic", "Status", "Created", "Usage per provider"],
            debates.map((d) => [d.topic, d.status, ago(d.created_at), d.usage?.length ? d.usage.map(tokens).join("; ") : "none"]),
            "My debates",
          )
        : el("p", {}, "You have started no debates."),
    ];
  });
}

signIn((who) => {
  document.getElementById("sections").hidden = false;
  me(who);
  keys(who);
  usage();
});

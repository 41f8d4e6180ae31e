/* Stagger console: partial page updates for forms, hand-written, no dependencies.
 *
 * A submit button with data-partial="id1 id2" posts its form with fetch; the server answers
 * with the whole page and only the elements with those ids are swapped in. An input with
 * data-partial-on-change="ids" does the same (action "save") when its value changes.
 * Without JavaScript, or if fetch fails, the form is submitted the ordinary way.
 */
(function () {
  "use strict";
  var HEADER = "X-Stagger-Partial";

  function swap(html, ids) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var active = document.activeElement;
    var activeId = active && active.id;
    ids.forEach(function (id) {
      var fresh = doc.getElementById(id);
      var old = document.getElementById(id);
      if (!fresh || !old) { return; }
      if (old.hasAttribute("aria-live")) {
        old.innerHTML = fresh.innerHTML; /* keep live regions in place so they announce */
      } else {
        old.replaceWith(document.importNode(fresh, true));
      }
    });
    if (activeId && document.getElementById(activeId)) {
      if (document.activeElement !== document.getElementById(activeId)) {
        document.getElementById(activeId).focus();
      }
    } else if (active && !document.body.contains(active)) {
      var region = document.getElementById(ids[0]);
      if (region) { region.focus(); } /* the focused control went away (a deleted row) */
    }
  }

  function fallback(form, name, value) {
    if (name) {
      var hidden = document.createElement("input");
      hidden.type = "hidden"; hidden.name = name; hidden.value = value;
      form.appendChild(hidden);
    }
    form.submit();
  }

  function send(form, name, value, ids, action) {
    var data = new FormData(form);
    if (name) { data.append(name, value); }
    var body = new URLSearchParams();
    data.forEach(function (v, k) { if (typeof v === "string") { body.append(k, v); } });
    form.setAttribute("aria-busy", "true");
    var headers = {}; headers[HEADER] = ids.join(" ");
    return fetch(action || form.getAttribute("action"), { /* form.action is shadowed by */
      /* the buttons named "action" */
      method: "POST", body: body, credentials: "same-origin", headers: headers
    }).then(function (response) {
      if (!response.ok && response.status !== 422) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (html) {
      swap(html, ids);
    }).catch(function () {
      fallback(form, name, value);
    }).then(function () {
      form.removeAttribute("aria-busy");
    });
  }

  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (!button || !button.dataset || !button.dataset.partial || !window.fetch) { return; }
    event.preventDefault();
    var ids = button.dataset.partial.split(/\s+/).filter(Boolean);
    send(button.form, button.name, button.value, ids, button.getAttribute("formaction"));
  });

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.dataset && el.dataset.partialOnChange && el.form && window.fetch) {
      send(el.form, "action", "save", el.dataset.partialOnChange.split(/\s+/).filter(Boolean));
    }
    if (el.dataset && el.dataset.disables) { /* "greyed out" options follow a radio choice */
      var target = document.getElementById(el.dataset.disables);
      if (target && el.checked) { target.disabled = el.value === el.dataset.disablesWhen; }
    }
  });
})();

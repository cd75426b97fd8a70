// Wingman's own start-up script for the API docs page (not part of Swagger UI). It lives in a
// file, not inline in the page, so the page's Content-Security-Policy needs no 'unsafe-inline'.
"use strict";
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  domNode: root,
  deepLinking: true,
  // The public validator is another origin: never asked.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
});

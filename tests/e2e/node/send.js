// Sends identify, track, page, screen, group, alias and an Application Installed with a device token through
// the intake with a real Node.js SDK, unmodified. Usage: node send.js <segment|customerio> <host> <writeKey> <userId>
"use strict";

const [sdk, host, writeKey, userId] = process.argv.slice(2);
const { Analytics } = require(sdk === "segment" ? "@segment/analytics-node" : "@customerio/cdp-analytics-node");

async function main() {
  // flushAt above seven: the calls go in one batch, in the order they were made.
  const analytics = new Analytics({ writeKey, host, flushAt: 20, maxRetries: 3 });
  const errors = [];
  analytics.on("error", (error) => errors.push(String(error && (error.reason || error.message || error))));
  analytics.identify({ userId, traits: { email: `${userId}@example.com`, plan: "pro" } });
  analytics.track({ userId, event: "Ordered", properties: { total: 42 } });
  analytics.page({ userId, category: "Docs", name: "Home", properties: { url: "https://example.com/home" } });
  analytics.screen({ userId, name: "Main", properties: { seq: 3 } });
  analytics.group({ userId, groupId: "acme-co", traits: { name: "Acme" } });
  analytics.alias({ userId, previousId: "anon-previous-id" });
  analytics.track({
    userId,
    event: "Application Installed",
    properties: { version: "1.0" },
    context: { device: { token: "fcm-token-0123456789", type: "ios" } },
  });
  await analytics.closeAndFlush({ timeout: 30000 });
  if (errors.length > 0) {
    console.error(`errors: ${errors.join("; ")}`);
    process.exit(1);
  }
  console.log("sent");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

// A member on current Element, for the integration tests: matrix-js-sdk with its Rust crypto in
// OnlySignedDevicesIsolationMode ("exclude insecure devices", MSC4153), its own cross-signing
// bootstrapped. It shares room keys only with devices their owner cross-signed and does not
// decrypt what other devices send, as Element does.
//
//   ELEMENT_CLIENT_MODULES=.cache/element-client/node_modules \
//   node client.mjs HOMESERVER_URL USER_ID PASSWORD
//
// Commands come as JSON lines on stdin, answers go as JSON lines to stdout (the SDK's own log
// goes to stderr):
//   {"op": "create_room", "invite": ["@bot:…"]}        -> {"ok": true, "room_id": "!…"}
//   {"op": "join", "room_id": "!…"}                    -> {"ok": true}
//   {"op": "wait_joined", "room_id", "user_id"}        -> {"ok": true}
//   {"op": "send", "room_id", "body"}                  -> {"ok": true, "event_id": "$…"}
//   {"op": "wait_reply", "room_id", "to", "sender"}    -> {"ok": true, "body", "msgtype",
//                                                           "encrypted": true}
//   {"op": "wait_message", "room_id", "sender"}        -> the same, for the first message
//   {"op": "stop"}
// A failure answers {"ok": false, "error": "…"} (a reply that does not decrypt: its reason).
// At start, once logged in and cross-signed: {"ready": true, "user_id", "device_id"}.

import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

// Node 20 lacks Promise.withResolvers (Node 22 has it), which the SDK uses.
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolvePromise;
        let rejectPromise;
        const promise = new this((res, rej) => {
            resolvePromise = res;
            rejectPromise = rej;
        });
        return { promise, resolve: resolvePromise, reject: rejectPromise };
    };
}

// stdout carries our answers only: the SDK logs through console, to stderr.
for (const level of ["log", "info", "debug", "warn", "error", "trace"]) {
    console[level] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}

const here = dirname(fileURLToPath(import.meta.url));
const modules = resolve(process.env.ELEMENT_CLIENT_MODULES
    ?? join(here, "../../../.cache/element-client/node_modules"));
const load = (path) => import(pathToFileURL(join(modules, "matrix-js-sdk/lib", path)).href);
const sdk = await load("index.js");
const { OnlySignedDevicesIsolationMode } = await load("crypto-api/index.js");

const [homeserver, userId, password] = process.argv.slice(2);
const answer = (object) => process.stdout.write(JSON.stringify(object) + "\n");

const identifier = { type: "m.id.user", user: userId };
const login = await sdk.createClient({ baseUrl: homeserver }).loginRequest({
    type: "m.login.password", identifier, password, initial_device_display_name: "Element (test)",
});
const client = sdk.createClient({
    baseUrl: homeserver, userId: login.user_id, deviceId: login.device_id,
    accessToken: login.access_token,
});
await client.initRustCrypto({ useIndexedDB: false });
const crypto = client.getCrypto();
crypto.setDeviceIsolationMode(new OnlySignedDevicesIsolationMode());
await crypto.bootstrapCrossSigning({
    setupNewCrossSigning: true,
    authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest({ type: "m.login.password", identifier, password });
    },
});

const synced = Promise.withResolvers();
client.on(sdk.ClientEvent.Sync, (state) => {
    if (state === "PREPARED" || state === "SYNCING") synced.resolve();
});
await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true });
await synced.promise;
answer({ ready: true, user_id: login.user_id, device_id: login.device_id });

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function until(what, timeoutMs, check) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const found = await check();
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(100);
    }
}

function repliesTo(event) {
    return event.getWireContent()?.["m.relates_to"]?.["m.in_reply_to"]?.event_id
        ?? event.getContent()?.["m.relates_to"]?.["m.in_reply_to"]?.event_id;
}

// The message as this client sees it: decrypted, or why it is not.
async function readable(event) {
    await client.decryptEventIfNeeded(event);
    if (event.isBeingDecrypted()) await event.getDecryptionPromise();
    if (event.isDecryptionFailure()) {
        throw new Error(`not decrypted: ${event.decryptionFailureReason}`);
    }
    const content = event.getContent();
    return { ok: true, event_id: event.getId(), body: content.body, msgtype: content.msgtype,
             encrypted: event.isEncrypted() };
}

async function firstMessage(roomId, sender, match, timeoutMs) {
    const event = await until("a message", timeoutMs, () => {
        const room = client.getRoom(roomId);
        return room?.getLiveTimeline().getEvents().find((e) => e.getSender() === sender
            && ["m.room.message", "m.room.encrypted"].includes(e.getWireType()) && match(e));
    });
    // A room key may come a moment after its message, as in Element: retry a while.
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        try {
            return await readable(event);
        } catch (error) {
            if (Date.now() > deadline) throw error;
            await sleep(200);
        }
    }
}

const commands = {
    async create_room({ invite = [], name = "Element-Test" }) {
        const { room_id } = await client.createRoom({
            name, invite, preset: "private_chat",
            initial_state: [{ type: "m.room.encryption", state_key: "",
                              content: { algorithm: "m.megolm.v1.aes-sha2" } }],
        });
        await until("the room in sync", 20000, () => client.getRoom(room_id));
        return { ok: true, room_id };
    },
    async join({ room_id }) {
        await client.joinRoom(room_id);
        await until("the room in sync", 20000, () => client.getRoom(room_id));
        return { ok: true };
    },
    async wait_joined({ room_id, user_id, timeout_ms = 20000 }) {
        await until(`${user_id} to join`, timeout_ms,
            () => client.getRoom(room_id)?.getMember(user_id)?.membership === "join");
        return { ok: true };
    },
    async send({ room_id, body }) {
        const { event_id } = await client.sendMessage(room_id, { msgtype: "m.text", body });
        return { ok: true, event_id };
    },
    async wait_reply({ room_id, to, sender, timeout_ms = 20000 }) {
        return firstMessage(room_id, sender, (e) => repliesTo(e) === to, timeout_ms);
    },
    async wait_message({ room_id, sender, timeout_ms = 20000 }) {
        return firstMessage(room_id, sender, () => true, timeout_ms);
    },
    async stop() {
        client.stopClient();
        return { ok: true };
    },
};

for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const command = JSON.parse(line);
    try {
        answer(await commands[command.op](command));
    } catch (error) {
        answer({ ok: false, error: String(error?.message ?? error) });
    }
    if (command.op === "stop") break;
}
process.exit(0);

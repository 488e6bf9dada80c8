/* swapwatch KYC client: runs one session of a swapwatch service from a vendor's page.
 *
 *   <script src="https://swapwatch.example/kyc.js"></script>
 *   SwapwatchKyc.run({
 *     service: "https://swapwatch.example",  // where the service answers (default: this origin)
 *     session: "kyc-…",                      // made by your backend with POST /v1/sessions
 *     video: document.querySelector("video"), // optional: the camera preview
 *     onPrompt: (prompt) => show(prompt.text), // each challenge as it starts
 *     onResult: (result) => {},               // each challenge's outcome
 *   }).then((verdict) => …);                  // {verdict: "pass"|"fail"|"retry", reasons, evidence}
 *
 * No build step, no framework. The page never decides: the verdict comes from the service (and
 * to your backend as the session.completed event); the promise only tells the page it is over.
 */
(function () {
  "use strict";

  var PROMPTS = {
    turn_left: "Turn your head to your left",
    turn_right: "Turn your head to your right",
    look_up: "Look up",
    hand_over_face: "Pass a hand across your face",
    move_closer: "Move closer to the camera"
  };

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  function headers(token) {
    var h = {"Content-Type": "application/json"};
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  async function post(url, body, token) {
    var response = await fetch(url, {method: "POST", headers: headers(token), body: JSON.stringify(body)});
    var answer = await response.json();
    if (!response.ok) throw new Error(answer.error ? answer.error.message : response.statusText);
    return answer;
  }

  // What the camera says about itself, then what it delivers when asked for other formats: a
  // physical camera switches modes, an injected video keeps its own (see the README).
  async function reportCamera(track, channel) {
    var capabilities = track.getCapabilities ? track.getCapabilities() : {};
    channel.send(JSON.stringify({type: "camera", label: track.label, capabilities: capabilities}));
    var start = track.getSettings();
    if (!start.width || !start.height) return;
    var requests = [
      {width: Math.round(start.width / 2), height: Math.round(start.height / 2)},
      {width: start.width, height: start.height}
    ];
    for (var i = 0; i < requests.length; i++) {
      var want = requests[i];
      try { await track.applyConstraints({width: {exact: want.width}, height: {exact: want.height}}); }
      catch (e) { /* refused: what arrives below says so */ }
      await sleep(300);
      var got = track.getSettings();
      channel.send(JSON.stringify({type: "format_probe", requested: want,
        delivered: {width: got.width, height: got.height, frameRate: got.frameRate || null}}));
    }
  }

  async function run(options) {
    var base = (options.service || "").replace(/\/$/, "");
    var sessionId = options.session;
    if (!sessionId) {
      // Convenient for demos; a vendor's backend should create the session and keep its policy.
      sessionId = (await post(base + "/v1/sessions", options.policy || {}, options.token)).id;
    }
    var media = await navigator.mediaDevices.getUserMedia(
      {video: {width: {ideal: 1280}, height: {ideal: 720}}, audio: false});
    var track = media.getVideoTracks()[0];
    if (options.video) options.video.srcObject = media;
    var peer = new RTCPeerConnection({iceServers: options.iceServers || []});
    var channel = peer.createDataChannel("swapwatch");
    peer.addTrack(track, media);

    function close() {
      peer.close();
      media.getTracks().forEach(function (t) { t.stop(); });
    }

    var finished = new Promise(function (resolve, reject) {
      channel.onopen = function () { reportCamera(track, channel).catch(function () {}); };
      channel.onmessage = function (event) {
        var message = JSON.parse(event.data);
        if (message.type === "challenge") {
          message.text = PROMPTS[message.kind] || message.kind;
          if (options.onPrompt) options.onPrompt(message);
        } else if (message.type === "challenge_result") {
          if (options.onResult) options.onResult(message);
        } else if (message.type === "verdict") {
          close();
          resolve(message);
        }
      };
      peer.onconnectionstatechange = function () {
        if (peer.connectionState === "failed") { close(); reject(new Error("the connection failed")); }
      };
    });

    await peer.setLocalDescription(await peer.createOffer());
    await new Promise(function (resolve) {
      if (peer.iceGatheringState === "complete") return resolve();
      peer.onicegatheringstatechange = function () {
        if (peer.iceGatheringState === "complete") resolve();
      };
      setTimeout(resolve, 3000);
    });
    try {
      var answer = await post(base + "/v1/webrtc/offer",
        {sdp: peer.localDescription.sdp, type: "offer", session: sessionId}, options.token);
      await peer.setRemoteDescription({type: answer.type, sdp: answer.sdp});
    } catch (e) {
      close();
      throw e;
    }
    return finished;
  }

  window.SwapwatchKyc = {run: run, prompts: PROMPTS};
})();

#!/usr/bin/env node
/*
 * A real node-discover 1.2.1 peer for twistednode's wire-compatibility tests and
 * benchmarks (driven by tests/harness/nodediscover.py).
 *
 * Usage: node peer.js [OPTIONS_JSON] [CHANNEL ...]
 *
 * OPTIONS_JSON is an object of node-discover options (port, address, unicast, key,
 * weight, helloInterval, checkInterval, nodeTimeout, masterTimeout, mastersRequired,
 * client, advertisement, hostname, reuseAddr, ...), passed to `new Discover()`
 * unchanged, plus two harness keys that are removed first:
 *   "verbose": true    also report helloReceived, helloEmitted and check events
 *   "channels": [...]  channels to join (as well as the CHANNEL arguments)
 * node-discover treats every falsy option (0, "", false) as "use the default".
 *
 * stdout: one JSON object per line, each with "kind", "t" (Date.now(), ms) and "mono"
 * (process.hrtime.bigint() in ms: CLOCK_MONOTONIC, the clock of Python's
 * time.monotonic() on Linux). Kinds: started, added, removed, master, promotion,
 * demotion, message, error, socketError, commandError, reply, stopped, exit, crash,
 * and with "verbose" helloReceived, helloEmitted, check.
 *
 * stdin: one JSON command per line; an optional "seq" is echoed in the reply:
 *   {"cmd":"send","channel":C,"data":D}   {"cmd":"promote"}
 *   {"cmd":"demote","permanent":B}        {"cmd":"advertise","data":D}
 *   {"cmd":"members"}  {"cmd":"hello"}  {"cmd":"join","channel":C}
 *   {"cmd":"leave","channel":C}  {"cmd":"stop"}
 * Every command is answered by one {"kind":"reply","cmd":...,"seq":...} line.
 * The peer stops cleanly on {"cmd":"stop"}, stdin EOF, SIGTERM or SIGINT.
 */
'use strict';

var path = require('path');
var Discover = require(path.join(__dirname, 'node_modules', 'node-discover'));

var HARNESS_KEYS = ['verbose', 'channels'];
var stopping = false;

function nowFields() {
	return {t: Date.now(), mono: Number(process.hrtime.bigint()) / 1e6};
}

// JSON.stringify that never throws (cycles, BigInt) and keeps undefined visible.
function safeJson(value) {
	var seen = new Set();
	return JSON.stringify(value, function (key, v) {
		if (typeof v === 'bigint') {
			return String(v);
		}
		if (typeof v === 'object' && v !== null) {
			if (seen.has(v)) {
				return '[Circular]';
			}
			seen.add(v);
		}
		return v;
	});
}

function emitLine(kind, fields) {
	var out = {kind: kind};
	var stamp = nowFields();
	out.t = stamp.t;
	out.mono = stamp.mono;
	Object.keys(fields || {}).forEach(function (k) {
		out[k] = fields[k];
	});
	// Pipes are synchronous on Linux, so a line is out before the next event.
	process.stdout.write(safeJson(out) + '\n');
}

function source(rinfo) {
	return rinfo ? {address: rinfo.address, port: rinfo.port} : null;
}

// A copy of a record as it is now: node-discover mutates records in place.
function snapshot(value) {
	if (value === undefined) {
		return null;
	}
	try {
		return JSON.parse(safeJson(value));
	} catch (e) {
		return String(value);
	}
}

function describeError(err) {
	if (err instanceof Error) {
		return {message: err.message, code: err.code || null, stack: err.stack};
	}
	// node-discover re-emits the data of a wire packet with event "error".
	return {message: String(err), code: null, stack: null, data: snapshot(err)};
}

function parseArgs(argv) {
	var options = {};
	var channels = [];
	var rest = argv.slice(2);
	if (rest.length > 0 && rest[0].trim().charAt(0) === '{') {
		options = JSON.parse(rest.shift());
	}
	channels = rest.slice();
	if (Array.isArray(options.channels)) {
		channels = options.channels.concat(channels);
	}
	var verbose = options.verbose === true;
	HARNESS_KEYS.forEach(function (k) {
		delete options[k];
	});
	return {options: options, channels: channels, verbose: verbose};
}

// A crash of the real library (e.g. the `null` datagram) still kills the process, as
// it would kill an application, but says why on stdout first.
process.on('uncaughtException', function (err) {
	emitLine('crash', describeError(err));
	process.exit(70);
});

var args;
try {
	args = parseArgs(process.argv);
} catch (e) {
	emitLine('crash', describeError(e));
	process.exit(64);
}

var options = args.options;
options.start = false;

var d;
try {
	d = new Discover(options);
} catch (e) {
	// e.g. nodeTimeout < checkInterval: node-discover refuses to construct.
	emitLine('crash', describeError(e));
	process.exit(65);
}

var started = false;

// The dgram socket has no 'error' listener in node-discover 1.2.1, so a bind error
// (EADDRINUSE) or a failed lookup of a unicast host name would kill the process with
// an unhandled 'error' event. Report it instead; a bind error is fatal.
d.broadcast.socket.on('error', function (err) {
	emitLine('socketError', describeError(err));
	if (!started) {
		process.exit(66);
	}
});

d.on('error', function (err) {
	emitLine('error', describeError(err));
});

d.on('started', function () {
	started = true;
	var addr = d.broadcast.socket.address();
	emitLine('started', {
		iid: d.broadcast.instanceUuid,
		pid: d.broadcast.processUuid,
		osPid: process.pid,
		weight: d.me.weight,
		address: addr.address,
		port: addr.port,
		hostName: d.broadcast.hostName,
		me: snapshot(d.me),
		settings: snapshot(d.settings),
		channels: d.channels.slice(),
		node: process.version
	});
});

d.on('added', function (node, obj, rinfo) {
	emitLine('added', {node: snapshot(node), envelope: snapshot(obj), source: source(rinfo)});
});

d.on('removed', function (node) {
	emitLine('removed', {node: snapshot(node)});
});

d.on('master', function (node, obj, rinfo) {
	emitLine('master', {node: snapshot(node), envelope: snapshot(obj), source: source(rinfo)});
});

d.on('promotion', function (me) {
	emitLine('promotion', {me: snapshot(me)});
});

d.on('demotion', function (me) {
	emitLine('demotion', {me: snapshot(me)});
});

d.on('stopped', function () {
	emitLine('stopped', {});
});

if (args.verbose) {
	d.on('helloReceived', function (node, obj, rinfo, isNew, wasMaster) {
		emitLine('helloReceived', {
			node: snapshot(node),
			envelope: snapshot(obj),
			source: source(rinfo),
			isNew: isNew,
			wasMaster: wasMaster
		});
	});
	d.on('helloEmitted', function () {
		emitLine('helloEmitted', {me: snapshot(d.me)});
	});
	d.on('check', function () {
		emitLine('check', {nodes: Object.keys(d.nodes).length, isMaster: d.me.isMaster});
	});
}

function join(channel) {
	return d.join(channel, function (data, obj, rinfo) {
		emitLine('message', {
			channel: channel,
			data: snapshot(data),
			envelope: snapshot(obj),
			source: source(rinfo)
		});
	});
}

function members() {
	var nodes = [];
	d.eachNode(function (node) {
		nodes.push(snapshot(node));
	});
	return {
		iid: d.broadcast.instanceUuid,
		isMaster: d.me.isMaster,
		me: snapshot(d.me),
		nodes: nodes
	};
}

function shutdown(reason) {
	if (stopping) {
		return;
	}
	stopping = true;
	if (started) {
		d.stop();
	}
	emitLine('exit', {reason: reason});
	process.exit(0);
}

var commands = {
	send: function (c) {
		return {ok: d.send(c.channel, c.data)};
	},
	promote: function () {
		d.promote();
		return {ok: true};
	},
	demote: function (c) {
		d.demote(c.permanent === true);
		return {ok: true};
	},
	advertise: function (c) {
		d.advertise(c.data);
		return {ok: true};
	},
	hello: function () {
		d.hello();
		return {ok: true};
	},
	join: function (c) {
		return {ok: join(c.channel)};
	},
	leave: function (c) {
		return {ok: d.leave(c.channel)};
	},
	members: function () {
		var m = members();
		m.ok = true;
		return m;
	}
};

function handleLine(line) {
	if (line.trim() === '') {
		return;
	}
	var c;
	try {
		c = JSON.parse(line);
	} catch (e) {
		emitLine('commandError', {line: line, message: e.message});
		return;
	}
	if (c === null || typeof c !== 'object') {
		emitLine('commandError', {line: line, message: 'not a JSON object'});
		return;
	}
	if (c.cmd === 'stop') {
		emitLine('reply', {cmd: 'stop', seq: c.seq === undefined ? null : c.seq, ok: true});
		shutdown('stop command');
		return;
	}
	var handler = Object.prototype.hasOwnProperty.call(commands, c.cmd) ? commands[c.cmd] : null;
	if (!handler) {
		emitLine('commandError', {line: line, message: 'unknown cmd: ' + String(c.cmd)});
		return;
	}
	var result;
	try {
		result = handler(c);
	} catch (e) {
		emitLine('commandError', {line: line, message: e.message});
		return;
	}
	result.cmd = c.cmd;
	result.seq = c.seq === undefined ? null : c.seq;
	emitLine('reply', result);
}

var buffered = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', function (chunk) {
	buffered += chunk;
	var nl;
	while ((nl = buffered.indexOf('\n')) >= 0) {
		var line = buffered.slice(0, nl);
		buffered = buffered.slice(nl + 1);
		handleLine(line);
		if (stopping) {
			return;
		}
	}
});
process.stdin.on('end', function () {
	if (buffered.trim() !== '') {
		handleLine(buffered);
	}
	shutdown('stdin closed');
});
process.on('SIGTERM', function () {
	shutdown('SIGTERM');
});
process.on('SIGINT', function () {
	shutdown('SIGINT');
});

args.channels.forEach(function (channel) {
	if (!join(channel)) {
		emitLine('commandError', {line: null, message: 'cannot join channel: ' + channel});
	}
});

d.start();
